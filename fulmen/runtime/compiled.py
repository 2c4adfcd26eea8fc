"""``trainer.fit(torch.compile(model))``: the original LightningModule, run through compiled steps.

``torch.compile(module)`` returns a ``torch._dynamo.OptimizedModule`` that wraps the module
without inheriting from it, and whose ``state_dict`` keys start with ``_orig_mod.``. Lightning
unwraps it (``lightning.pytorch.utilities.compile.from_compiled``) and so does fulmen: the
Trainer runs the original module, so its hooks, attributes and checkpoint keys are the
module's own, and only the call paths that do the numeric work go through the compiler: the
module's ``forward`` and the ``*_step`` methods it defines, each wrapped with the
``OptimizedModule``'s own dynamo context (the options the user passed to ``torch.compile``).

Two things Lightning leaves to chance are decided here:

- The methods that talk to the Trainer (``self.log`` and its kin) are kept out of dynamo on
  the compiled module: tracing into the Trainer's bookkeeping is useless (it is Python state,
  not tensor work) and on torch 2.13 it crashes dynamo inside ``self.log`` (Lightning 2.6.6
  stops there with ``InternalTorchDynamoError``). Each is a graph break instead.
- A module dynamo cannot compile falls back to eager with one ``RuntimeWarning`` naming the
  cause, instead of stopping the run: the first dynamo or backend error of any compiled step
  switches all of the module's compiled paths to their eager originals. The step that hit the
  error runs again eagerly on the same batch; a compiled part that had already run before the
  failing part (a graph break earlier in the step) is therefore repeated for that one batch.

Eager users pay nothing: nothing here imports ``torch._dynamo`` unless it is already loaded
(an ``OptimizedModule`` cannot exist otherwise).
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any

import torch

from fulmen.core.hooks import is_overridden
from fulmen.core.module import LightningModule

# the methods compiled when the module defines them (Lightning compiles the same five)
COMPILED_METHODS = ("forward", "training_step", "validation_step", "test_step", "predict_step")
# methods that reach the Trainer's state, kept out of dynamo (a graph break each)
RUN_FACING_METHODS = (
    "log", "log_dict", "print", "optimizers", "lr_schedulers", "manual_backward", "all_gather",
    "clip_gradients", "toggle_optimizer", "untoggle_optimizer",
)  # fmt: skip


def is_compiled_module(obj: Any) -> bool:
    """True for the ``OptimizedModule`` that ``torch.compile(module)`` returns."""
    dynamo = sys.modules.get("torch._dynamo")  # not loaded: nothing can have been compiled
    return dynamo is not None and isinstance(obj, dynamo.OptimizedModule)


class _CompileOutcome:
    """Whether the module's compiled paths still run compiled; shared by all of them."""

    def __init__(self, module_name: str) -> None:
        self.module_name = module_name
        self.eager = False

    def fall_back(self, method: str, error: BaseException) -> None:
        """Switch the module to eager, with the one warning that says why."""
        if self.eager:
            return
        self.eager = True
        warnings.warn(
            f"torch.compile could not compile {self.module_name}.{method}: {type(error).__name__}: "
            f"{describe_compile_error(error)}\n"
            f"{self.module_name} runs eagerly (uncompiled) from here on, for all its steps and forward; "
            f"the run goes on.\nHINT: {_hint(error)}",
            RuntimeWarning,
            stacklevel=3,  # the loop that called the step
        )


def _hint(error: BaseException) -> str:
    """What to do about ``error``; the one case fulmen causes itself gets its own words."""
    if "torch.compiler.disable" in str(error) and any(f"LightningModule.{name} " in str(error)
                                                       for name in RUN_FACING_METHODS):  # fmt: skip
        return (
            "with torch.compile(..., fullgraph=True) a step cannot call self.log, self.optimizers() and the "
            "like: each is a graph break (the Trainer's bookkeeping stays out of dynamo). Drop fullgraph=True, "
            "or log from a hook (on_train_batch_end receives the step's outputs)."
        )
    return "fix the cause (TORCHDYNAMO_VERBOSE=1 prints dynamo's full traceback), or pass the module to the Trainer uncompiled."


def describe_compile_error(error: BaseException, limit: int = 400) -> str:
    """One line from a dynamo error: its first paragraph, and where in the user's code it stopped."""
    paragraphs = [p for p in str(error).split("\n\n") if p.strip()]
    if not paragraphs:
        return "(no message)"
    cause = " ".join(line.strip() for line in paragraphs[0].splitlines() if line.strip())
    if len(cause) > limit:
        cause = cause[: limit - 3] + "..."
    for paragraph in paragraphs:
        lines = [line.strip() for line in paragraph.splitlines()]
        if lines[0] == "from user code:":
            places = [line for line in lines if line.startswith("File ")]
            if places:
                cause += f" ({places[-1]})"
    return cause


def _compiled_call(method: str, eager: Callable[..., Any], compiled: Callable[..., Any],
                   outcome: _CompileOutcome) -> Callable[..., Any]:  # fmt: skip
    """``compiled`` with the eager fallback; inside a compiled caller it is ``eager`` (dynamo inlines it)."""
    from torch._dynamo.exc import TorchDynamoException  # BackendCompilerFailed, InductorError are ones too

    @functools.wraps(eager)
    def call(*args: Any, **kwargs: Any) -> Any:
        if outcome.eager or torch.compiler.is_compiling():
            return eager(*args, **kwargs)
        try:
            return compiled(*args, **kwargs)
        except TorchDynamoException as error:
            outcome.fall_back(method, error)
            return eager(*args, **kwargs)

    return call


def from_compiled(model: Any) -> LightningModule:
    """The LightningModule inside ``torch.compile``'s output, with its steps going through the compiler.

    Lightning's ``from_compiled``: the original module is changed in place (instance
    attributes for the compiled methods, the originals kept in ``_compiler_ctx``), which
    ``to_uncompiled`` undoes. Calling it again with the same compiled module changes nothing.
    """
    if not is_compiled_module(model):
        raise ValueError(f"from_compiled() expects the output of torch.compile; got {type(model).__name__}.")
    original = model._orig_mod
    if not isinstance(original, LightningModule):
        raise ValueError(
            f"The Trainer got a compiled {type(original).__name__} (torch.compile output); it needs a compiled "
            "LightningModule.\n"
            "HINT: compile the LightningModule itself (trainer.fit(torch.compile(lit_model))), or compile the "
            "inner network inside it (self.net = torch.compile(net)) and pass the LightningModule."
        )
    context = model.dynamo_ctx
    existing = original._compiler_ctx
    if existing is not None and existing["dynamo_ctx"] is context:
        return original
    if existing is not None:
        to_uncompiled(original)
    outcome = _CompileOutcome(type(original).__name__)
    originals = {name: getattr(original, name) for name in COMPILED_METHODS if is_overridden(original, name, LightningModule)}
    assigned = [name for name in originals if name in original.__dict__]  # set on the instance by the user
    for name, eager in originals.items():
        setattr(original, name, _compiled_call(name, eager, context(eager), outcome))
    run_facing = [name for name in RUN_FACING_METHODS if name not in original.__dict__]
    for name in run_facing:
        setattr(original, name, torch.compiler.disable(getattr(original, name)))
    original._compiler_ctx = {
        "compiler": "dynamo",
        "dynamo_ctx": context,
        "originals": originals,
        "assigned": assigned,
        "run_facing": run_facing,
        "outcome": outcome,
    }
    return original


def to_uncompiled(model: Any) -> LightningModule:
    """The LightningModule with its compiled paths removed again (for a compiled or an unwrapped one)."""
    original = model._orig_mod if is_compiled_module(model) else model
    if not isinstance(original, LightningModule):
        raise ValueError(f"to_uncompiled() expects a compiled LightningModule; got {type(original).__name__}.")
    context = original._compiler_ctx
    if context is not None:
        for name in (*context["originals"], *context["run_facing"]):
            delattr(original, name)  # the instance attribute: the class's method shows again
        for name in context["assigned"]:
            setattr(original, name, context["originals"][name])
        original._compiler_ctx = None
    return original


def unwrap_compiled(model: Any) -> Any:
    """``model`` itself, or for a compiled LightningModule the original prepared by ``from_compiled``."""
    return from_compiled(model) if is_compiled_module(model) else model
