"""JobSpec validation of names, and the record form that leaves secret values out."""

from __future__ import annotations

import pytest

from fulmen.errors import LaunchError
from fulmen.jobs.spec import REDACTED, JobSpec, redact_args


@pytest.mark.parametrize("name", ["run\n#SBATCH --partition=high", "tab\there", "bell\x07", "cr\r", "del\x7f"])
def test_a_name_with_a_control_character_is_refused(name: str) -> None:
    with pytest.raises(LaunchError, match=r"--name .* contains a control character.*\nHINT: "):
        JobSpec(entry="t.py", name=name)


def test_a_printable_name_is_kept() -> None:
    assert JobSpec(entry="t.py", name="my run-1.a_b").job_name == "my run-1.a_b"


def test_the_record_keeps_names_of_secret_variables_but_not_their_values() -> None:
    env = (("HF_TOKEN", "hf_abc"), ("AWS_SECRET_ACCESS_KEY", "s3cr3t"), ("DB_PASSWORD", "pw"),
           ("WANDB_API_KEY", "k"), ("NCCL_DEBUG", "INFO"))  # fmt: skip
    spec = JobSpec(entry="t.py", env=env)
    record = spec.to_record()
    assert record["env"] == [["HF_TOKEN", REDACTED], ["AWS_SECRET_ACCESS_KEY", REDACTED], ["DB_PASSWORD", REDACTED],
                             ["WANDB_API_KEY", REDACTED], ["NCCL_DEBUG", "INFO"]]  # fmt: skip
    assert spec.to_dict()["env"][0] == ("HF_TOKEN", "hf_abc")  # the spec itself (what the ranks get) is intact
    assert "hf_abc" not in str(record) and "s3cr3t" not in str(record)


def test_secret_looking_script_options_lose_their_values_in_the_record() -> None:
    args = ("--lr", "0.1", "--api-key", "abc", "--token=xyz", "--password", "--epochs", "3", "data/")
    assert redact_args(args) == (
        "--lr", "0.1", "--api-key", REDACTED, f"--token={REDACTED}", "--password", "--epochs", "3", "data/",
    )  # fmt: skip
    assert JobSpec(entry="t.py", args=args).to_record()["args"][3] == REDACTED


@pytest.mark.parametrize(
    "options",
    [{"partition": "debug\n#SBATCH --qos=high"}, {"account": "a\rb"}, {"extra": (("comment", "x\ny"),)}],
)
def test_sbatch_settings_with_a_line_break_are_refused(options) -> None:
    from fulmen.jobs.spec import SlurmOptions

    with pytest.raises(LaunchError, match=r"contains a control character.*#SBATCH line.*\nHINT: "):
        SlurmOptions(**options)
