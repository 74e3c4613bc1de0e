#!/usr/bin/env bash
# Train with mmf_run on every node of a SLURM allocation: one torchrun per node (srun), one process
# per GPU of the node, c10d rendezvous on the allocation's first node. Run from the repository root
# with the venv active (sbatch passes the environment on); arguments go to mmf_run, e.g.
#   sbatch --nodes=2 --gpus-per-node=8 scripts/slurm_train.sh config=projects/refnet/configs/hateful_memes/refnet_ms.yaml
#SBATCH --job-name=refnet
#SBATCH --ntasks-per-node=1
#SBATCH --output=slurm-%j.out
set -euo pipefail
MASTER_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
RDZV_PORT=${RDZV_PORT:-29400}
srun torchrun --nnodes="$SLURM_NNODES" --nproc_per_node="$GPUS_PER_NODE" --rdzv_backend=c10d \
  --rdzv_endpoint="$MASTER_HOST:$RDZV_PORT" --rdzv_id="refnet_$SLURM_JOB_ID" "$(which mmf_run)" "$@"
