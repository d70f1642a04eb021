"""Reading and checking the command line's input images.

Every image becomes an RGB ``uint8`` array ``[H, W, 3]``:

- one channel (grayscale, 1-bit, palette without transparency) is converted to RGB;
- 16-bit grayscale is scaled to 8 bits;
- an alpha channel is dropped after compositing the image onto a white
  background (what a viewer shows), with a note: saliency models take RGB;
- the EXIF orientation of camera JPEGs is applied;
- images with more pixels than Pillow's ``Image.MAX_IMAGE_PIXELS`` (about
  89 million) are refused as possible decompression bombs; smaller large images
  are simply resized to the model's input size.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import CliError

__all__ = [
    "IMAGE_SUFFIXES",
    "DEFAULT_IMAGE",
    "InputImage",
    "images_in",
    "load_image",
    "load_sample_image",
    "resize_image",
]

#: File name endings read from folders (any format Pillow opens works when named directly).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: The scikit-image photo ``explain`` uses when no image is given (a cat, ImageNet class 285).
DEFAULT_IMAGE = "chelsea"


@dataclass
class InputImage:
    """An image ready for a model.

    Attributes:
      name: what the image is called in reports (the file name, or ``skimage.data.chelsea()``).
      pixels: RGB ``uint8`` array ``[H, W, 3]`` at the original size.
      notes: conversions that were made (alpha dropped, grayscale converted), for the user.
    """

    name: str
    pixels: np.ndarray
    notes: list[str] = field(default_factory=list)


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    """Converts any Pillow mode to RGB, recording the conversions worth telling the user."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        notes.append("the image has an alpha channel: composited onto white, alpha dropped")
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        notes.append(f"the image is {image.mode} grayscale: scaled to 8 bits and converted to RGB")
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        gray = np.clip(values / top * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if image.mode in ("1", "L", "P"):
        notes.append("the image has one channel: converted to RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def load_image(path: str | Path, argument: str = "image") -> InputImage:
    """Reads an image file as RGB ``uint8``.

    Args:
      path: the file (PNG, JPEG or any format Pillow reads).
      argument: the command-line argument the path came from, for error messages.

    Returns:
      The :class:`InputImage`.

    Raises:
      CliError: a missing file, a directory, a file that is not an image or is
        truncated, or an image over ``PIL.Image.MAX_IMAGE_PIXELS`` pixels.
    """
    path = Path(path)
    if not path.exists():
        raise CliError(f"{argument}: no such file: {str(path)!r}")
    if not path.is_file():
        raise CliError(f"{argument}: expected an image file (PNG or JPEG), got the directory {str(path)!r}")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                rgb = _to_rgb(ImageOps.exif_transpose(opened), notes)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise CliError(
            f"{argument}: refusing {str(path)!r}: more pixels than Image.MAX_IMAGE_PIXELS "
            f"({Image.MAX_IMAGE_PIXELS}), a possible decompression bomb ({error})"
        ) from None
    except UnidentifiedImageError:
        raise CliError(
            f"{argument}: expected an image file (PNG or JPEG), but {str(path)!r} is not an image "
            "Pillow can read"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's errors for damaged files
        raise CliError(f"{argument}: cannot read the image {str(path)!r}: {error}") from None
    return InputImage(name=path.name, pixels=np.asarray(rgb, dtype=np.uint8), notes=notes)


def load_sample_image(name: str) -> InputImage:
    """Returns one of scikit-image's offline sample photos (``skimage.data.<name>()``) as RGB."""
    from skimage import data

    loader: Callable[[], np.ndarray] | None = getattr(data, name, None)
    if loader is None:
        raise CliError(f"no scikit-image sample image called {name!r}")
    pixels = np.asarray(loader())
    notes = []
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
        notes.append("the image has one channel: converted to RGB")
    return InputImage(name=f"skimage.data.{name}()", pixels=pixels[..., :3].astype(np.uint8), notes=notes)


def images_in(paths: list[str], argument: str = "images") -> list[Path]:
    """Expands files and folders into the list of image files (folders: non-recursive, sorted).

    Raises:
      CliError: a path that does not exist, or a folder with no image file.
    """
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            found = sorted(p for p in entry.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise CliError(
                    f"{argument}: the folder {str(entry)!r} holds no image file "
                    f"(expected names ending in {', '.join(IMAGE_SUFFIXES)})"
                )
            files.extend(found)
        elif entry.exists():
            files.append(entry)
        else:
            raise CliError(f"{argument}: no such file or folder: {str(entry)!r}")
    return files


def resize_image(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes an RGB ``uint8`` image to ``size = (height, width)``, anti-aliased.

    Large images are first shrunk by an integer factor with Pillow's fast
    ``Image.reduce`` (box filter), then resized with scikit-image's
    anti-aliased ``transform.resize`` (what the tests and examples use).

    Returns:
      ``float32`` ``[height, width, 3]`` with values in [0, 255].
    """
    from skimage import transform

    height, width = size
    factor = min(pixels.shape[0] // (4 * height), pixels.shape[1] // (4 * width))
    if factor >= 2:
        pixels = np.asarray(Image.fromarray(pixels).reduce(factor))
    if pixels.shape[:2] == (height, width):
        return pixels.astype(np.float32)
    resized = transform.resize(pixels, (height, width), anti_aliasing=True, preserve_range=True)
    return np.clip(resized, 0, 255).astype(np.float32)
