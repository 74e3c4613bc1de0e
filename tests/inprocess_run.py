"""``mmf_run`` / ``mmf_predict`` in the test process: the console scripts' own function
(``mmf_cli.run.run``, what both entry points call) with the process state a run leaves behind
put back afterwards, so that a run costs its work and not a new interpreter's imports (about
4 s each on 2 cores).

What a subprocess gives for free and this restores: ``os.environ``, ``sys.argv``, the
working directory, ``sys.stdout``/``sys.stderr`` (rc10's ``stdout_capture`` replaces
``sys.stdout``), every logger's handlers and level (rc10's ``Logger`` adds file and console
handlers per run), warning filters and ``logging.captureWarnings``, MMF's registry state
(config, writer, seed, ...), the random generators, torch's global switches, the save_dir
locks (held until process exit by design) and the shared lmdb environments (a later test
may recreate a store at the same path).

Tests whose point is the installed console script itself, an environment variable read at
import time (``MMF_REFNET_SKIP_SHIMS``, ``MMF_REFNET_AUTOLOAD``, the hub's settings), several
processes, or a process that dies (``kill -9``) keep running it as a subprocess
(``runner.run_cli``).
"""

import contextlib
import io
import logging
import os
import random
import subprocess
import sys
import traceback
import warnings

import numpy as np
import torch

import mmf_refnet  # noqa: F401  (shims + registration, as the console scripts get them through the autoload hook)


def _all_loggers():
    manager = logging.Logger.manager
    return [logging.getLogger()] + [item for item in list(manager.loggerDict.values()) if isinstance(item, logging.Logger)]


@contextlib.contextmanager
def _loggers_restored():
    saved = {logger.name: (logger, list(logger.handlers), logger.level, logger.propagate) for logger in _all_loggers()}
    try:
        yield
    finally:
        for logger in _all_loggers():
            handlers, level, propagate = saved.get(logger.name, (logger, [], logging.NOTSET, True))[1:]
            for handler in list(logger.handlers):
                if handler not in handlers:
                    logger.removeHandler(handler)
                    with contextlib.suppress(Exception):
                        handler.close()
            logger.setLevel(level)
            logger.propagate = propagate
        logging.captureWarnings(False)


@contextlib.contextmanager
def _process_state_restored(env: dict, argv: list):
    from mmf.common.registry import registry

    saved_environ, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    saved_registry = dict(registry.mapping["state"])
    saved_random = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    saved_torch = (torch.get_float32_matmul_precision(), torch.is_anomaly_enabled(), torch.get_num_threads(),
                   torch.are_deterministic_algorithms_enabled())
    os.environ.clear()
    os.environ.update(env)
    sys.argv = argv
    try:
        with _loggers_restored(), warnings.catch_warnings():
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        registry.mapping["state"].clear()
        registry.mapping["state"].update(saved_registry)
        random.setstate(saved_random[0])
        np.random.set_state(saved_random[1])
        torch.random.set_rng_state(saved_random[2])
        torch.set_float32_matmul_precision(saved_torch[0])
        torch.autograd.set_detect_anomaly(saved_torch[1])
        torch.set_num_threads(saved_torch[2])
        torch.use_deterministic_algorithms(saved_torch[3])
        _release_run_resources()


def _release_run_resources() -> None:
    from mmf_refnet import run_lock
    from mmf_refnet.compat import lmdb_shared_env

    for lock in list(run_lock._HELD.values()):
        lock.release()
    for environment in list(lmdb_shared_env._ENVIRONMENTS.values()):
        with contextlib.suppress(Exception):
            environment.close()
    lmdb_shared_env._ENVIRONMENTS.clear()


def run(script: str, opts: list, env: dict) -> subprocess.CompletedProcess:
    """``script`` (``mmf_run`` or ``mmf_predict``) with ``opts`` as its command line, in this process;
    a CompletedProcess as ``subprocess.run`` would give (an exception is the traceback and exit 1)."""
    from mmf_cli.run import run as mmf_run

    if script not in ("mmf_run", "mmf_predict"):
        raise ValueError(f"no in-process form of {script}")
    predict = script == "mmf_predict"
    opts = list(opts) + (["evaluation.predict=true"] if predict else [])  # what mmf_cli.predict adds
    stdout, stderr = io.StringIO(), io.StringIO()
    returncode = 0
    with _process_state_restored(env, [script, *opts]):
        saved_streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = stdout, stderr
        try:
            mmf_run(opts=opts, predict=predict)
        except SystemExit as error:
            returncode = error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
            if not isinstance(error.code, (int, type(None))):
                print(error.code, file=stderr)
        except BaseException:  # what the interpreter would print before exiting with 1
            stderr.write(traceback.format_exc())
            returncode = 1
        finally:
            sys.stdout, sys.stderr = saved_streams
    return subprocess.CompletedProcess([script, *opts], returncode, stdout.getvalue(), stderr.getvalue())
