"""Input checks shared by the library. Shape and dtype checks never synchronise
with an accelerator; value checks (NaN, label range) run only on CPU tensors."""

from __future__ import annotations

import math
import numbers
import warnings

import torch
from torch import Tensor, nn


def check_batch(x: Tensor, name: str = "x", event_shape: tuple[int, ...] | None = None) -> None:
    """Raise unless ``x`` is a non-empty floating batch ``(B, *event_shape)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch of shape (B, ...), got {tuple(x.shape)}")
    if event_shape is not None and tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(
            f"{name} must have shape (B, {', '.join(map(str, event_shape))}), got {tuple(x.shape)}"
        )
    if x.device.type == "cpu" and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")


def check_labels(y: Tensor, batch_size: int, n_classes: int | None = None, name: str = "y") -> None:
    """Raise unless ``y`` is an int64 vector of ``batch_size`` labels in ``[0, n_classes)``."""
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of int64 labels, got {type(y).__name__}")
    if y.dtype != torch.long:
        raise TypeError(f"{name} must have dtype torch.int64, got {y.dtype}")
    if tuple(y.shape) != (batch_size,):
        raise ValueError(f"{name} must have shape ({batch_size},), got {tuple(y.shape)}")
    if n_classes is not None and y.device.type == "cpu" and y.numel() > 0:
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= n_classes:
            raise ValueError(f"{name} must lie in [0, {n_classes - 1}], got values in [{low}, {high}]")


def check_positive(value: float, name: str, allow_zero: bool = False) -> float:
    """Raise unless ``value`` is a finite positive (or, with ``allow_zero``, non-negative) real
    number; return it as a ``float``. ``bool`` is refused (``True`` is not a step size)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    kind = "non-negative" if allow_zero else "positive"
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite {kind} number, got {value}")
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"{name} must be {kind}, got {value}")
    return float(value)


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (naming the argument and the choices); return it."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_count(value: int, name: str, minimum: int = 1) -> int:
    """Raise unless ``value`` is an integer (``bool`` refused) of at least ``minimum``; return it as an ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value}")
    return int(value)


def check_real(value: float, name: str) -> float:
    """Raise unless ``value`` is a finite real number (``bool`` refused); return it as a ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    return float(value)


def check_probability(value: float, name: str) -> float:
    """Raise unless ``value`` is a real number with ``0 <= value <= 1``; return it as a ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a probability in [0, 1], got {value!r} ({type(value).__name__})")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


def check_generator(generator: object, name: str = "generator") -> None:
    """Raise ``TypeError`` unless ``generator`` is a ``torch.Generator`` or ``None`` (the global RNG)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator, got {type(generator).__name__} ({generator!r}); for a "
                        "seed, pass torch.Generator(device).manual_seed(seed), or None for the global RNG")


def check_optimizer_trains(optimizer: object, module: nn.Module, name: str = "model") -> None:
    """Raise unless ``optimizer`` is a ``torch.optim.Optimizer`` holding every trainable parameter of ``module``.

    An optimizer built over another module's parameters would step them and leave ``module`` as it is, without a
    word. Parameters with ``requires_grad=False`` (frozen) need not be in it.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer over {name}'s parameters (e.g. "
                        f"torch.optim.Adam({name}.parameters())), got {type(optimizer).__name__}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = [(key, p) for key, p in module.named_parameters() if p.requires_grad]
    missing = [key for key, p in trainable if id(p) not in held]
    if missing:
        listed = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ValueError(
            f"optimizer must hold every trainable parameter of {name}, but {len(missing)} of its {len(trainable)} "
            f"are not in it ({listed}), so training would not change them: build the optimizer over "
            f"{name}.parameters() (set requires_grad=False on parameters you mean to freeze)"
        )


_CONVERSIONS = {torch.float32: ".float()", torch.float64: ".double()", torch.float16: ".half()",
                torch.bfloat16: ".bfloat16()"}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_same_dtype(x: Tensor, module: nn.Module, name: str = "x", module_name: str = "model") -> None:
    """Raise ``TypeError`` if floating ``x`` and ``module``'s first floating-point parameter differ in dtype.

    Reads dtypes only (no device synchronisation); a module without floating-point parameters is not checked.
    """
    parameter = next((p for p in module.parameters() if p.is_floating_point()), None)
    if parameter is None or x.dtype == parameter.dtype:
        return
    to_data = _CONVERSIONS.get(parameter.dtype, f".to({parameter.dtype})")
    to_model = _CONVERSIONS.get(x.dtype, f".to({x.dtype})")
    raise TypeError(
        f"{name} is {_dtype_name(x.dtype)} but the {module_name}'s parameters are {_dtype_name(parameter.dtype)}: "
        f"convert the data with {name}{to_data} or the {module_name} with {module_name}{to_model}"
    )


UNSCALED_FACTOR = 10.0
"""Data whose largest absolute value passes this many times the chains' (at least 1) is taken as unscaled."""


def warn_if_unscaled(x: Tensor, reference: Tensor, name: str = "x", source: str = "the initializer") -> bool:
    """Warn if ``x`` reaches far beyond the range of ``reference`` (where sampling chains start); CPU only.

    Returns whether it warned. Tensors on other devices are not read (no synchronisation).
    """
    if x.device.type != "cpu" or reference.device.type != "cpu":
        return False
    scale = reference.abs().max().clamp(min=1.0)
    if not bool(x.abs().max() > UNSCALED_FACTOR * scale):
        return False
    low, high = float(x.min()), float(x.max())
    start_low, start_high = float(reference.min()), float(reference.max())
    warnings.warn(
        f"{name} has values in [{low:.4g}, {high:.4g}], far outside [{start_low:.3g}, {start_high:.3g}] where the "
        f"sampling chains start (draws of {source}); the negatives can never look like such data. Scale the data to "
        "the chains' range (images in 0..255 to [-1, 1]: x / 127.5 - 1), or start the chains in the data's range",
        UserWarning,
        stacklevel=4,
    )
    return True
