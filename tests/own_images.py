"""A generated "own data" folder: PIL-drawn images and a jsonl of (id, img, text, label).

Three classes (or two): the shape and its colour carry the label, and so does the caption
(with filler words and a few captions that say nothing), so a model that learns either
modality beats chance.
"""

import json
import os
import random

from PIL import Image, ImageDraw

SHAPES = {"circle": (200, 40, 40), "square": (40, 170, 60), "triangle": (50, 70, 210)}
WORDS = {"circle": ["round", "ball", "circle"], "square": ["box", "square", "block"],
         "triangle": ["pyramid", "triangle", "wedge"]}
FILLER = ["a", "picture", "of", "the", "one", "here", "small", "big", "thing", "nice"]


def draw(shape: str, rng: random.Random, size: int = 96) -> Image.Image:
    background = tuple(rng.randint(200, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    pen = ImageDraw.Draw(image)
    extent = rng.randint(size // 3, size // 2)
    x, y = rng.randint(4, size - extent - 4), rng.randint(4, size - extent - 4)
    colour = tuple(min(255, max(0, c + rng.randint(-30, 30))) for c in SHAPES[shape])
    box = (x, y, x + extent, y + extent)
    if shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "square":
        pen.rectangle(box, fill=colour)
    else:
        pen.polygon([(x, y + extent), (x + extent, y + extent), (x + extent // 2, y)], fill=colour)
    return image


def caption(shape: str, rng: random.Random) -> str:
    if rng.random() < 0.15:
        return " ".join(rng.sample(FILLER, 4))  # says nothing about the class
    words = rng.sample(FILLER, 3) + [rng.choice(WORDS[shape])]
    rng.shuffle(words)
    return " ".join(words)


def make_folder(root: str, per_class: int = 40, classes=tuple(SHAPES), seed: int = 0) -> str:
    """``root/img/*.png`` and ``root/data.jsonl`` (string ids and labels); returns the jsonl path."""
    rng = random.Random(seed)
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    rows = []
    for index in range(per_class * len(classes)):
        shape = classes[index % len(classes)]
        name = f"img/{index:04d}.png"
        draw(shape, rng).save(os.path.join(root, name))
        rows.append({"id": f"item-{index:04d}", "img": name, "text": caption(shape, rng), "label": shape})
    path = os.path.join(root, "data.jsonl")
    with open(path, "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return path
