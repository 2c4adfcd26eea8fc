"""The Trainer is composed, not inherited: it owns collaborators, the loops get those and never the
Trainer, no module writes another object's private attributes, and Lightning's attributes delegate."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import fulmen as pl
from fulmen.runtime import evaluation_loop, fit_loop
from fulmen.runtime.evaluation_loop import EvaluationLoop
from fulmen.runtime.fit_loop import FitLoop
from tests.core.models import TRAINER_QUIET, BoringModel

PACKAGE = Path(pl.__file__).parent
# torch's own DataLoader iterator, not one of ours: the fetcher skips finished batches at the index level
# and Lightning's own attribute for trainer.fit(torch.compile(m)), which only compiled.py owns
_FOREIGN_PRIVATE_WRITES = {
    ("runtime/fetcher.py", "it._index_sampler"),
    ("runtime/compiled.py", "original._compiler_ctx"),
}


def test_trainer_has_no_base_classes() -> None:
    assert pl.Trainer.__bases__ == (object,)


@pytest.mark.parametrize("loop", [FitLoop, EvaluationLoop])
def test_loops_are_built_from_collaborators_not_the_trainer(loop: type) -> None:
    annotations = [str(p.annotation) for p in inspect.signature(loop.__init__).parameters.values()]
    assert annotations and not any("Trainer" in a and "TrainerState" not in a for a in annotations), annotations


@pytest.mark.parametrize("module", [fit_loop, evaluation_loop])
def test_loop_modules_do_not_import_the_trainer(module) -> None:
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "fulmen.runtime.trainer" not in imported


def _private_writes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            for attr in ast.walk(target) if target is not None else ():
                if isinstance(attr, ast.Attribute) and attr.attr.startswith("_") and not attr.attr.startswith("__"):
                    owner = attr.value
                    if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                        found.append(ast.unparse(attr))
    return found


def test_no_runtime_or_core_module_writes_another_objects_private_attributes() -> None:
    offenders = []
    for path in sorted([*PACKAGE.glob("runtime/**/*.py"), *PACKAGE.glob("core/*.py")]):
        relative = path.relative_to(PACKAGE).as_posix()
        offenders += [(relative, w) for w in _private_writes(path) if (relative, w) not in _FOREIGN_PRIVATE_WRITES]
    assert [o for o in offenders if not o[0].startswith("core/export")] == []


def test_lightning_attributes_read_and_write_the_collaborator_that_owns_them() -> None:
    trainer = pl.Trainer(max_epochs=3, limit_val_batches=2, **TRAINER_QUIET)
    assert trainer.max_epochs == trainer.settings.max_epochs == 3
    trainer.limit_val_batches = 0
    assert trainer.settings.limit_val_batches == 0
    trainer.should_stop = True
    assert trainer.progress.should_stop is True
    with pytest.raises(AttributeError, match="read-only"):
        trainer.current_epoch = 5  # Lightning's current_epoch is read-only too


def test_hooks_receive_the_trainer_itself_with_lightnings_properties() -> None:
    seen = {}

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["trainer"] = trainer
            seen["values"] = (trainer.global_step, trainer.current_epoch, trainer.training, trainer.num_training_batches)

    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=[Probe()], **TRAINER_QUIET)
    model = BoringModel()
    trainer.fit(model)
    assert seen["trainer"] is trainer and model.trainer is trainer
    assert seen["values"] == (2, 0, True, 2)
