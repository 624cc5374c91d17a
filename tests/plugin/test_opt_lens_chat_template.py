"""--lens-chat-template / ini lens_chat_template: each prompt a user turn of the tokenizer's
chat template; its own golden; a clear refusal where the tokenizer has none."""

from __future__ import annotations

import shutil

import pytest
from _plugin_helpers import GENERATED, LensProject, failed_models

from lenscheck.golden.store import read_golden
from lenscheck.models import resolve_model

MODEL = "synthetic-llama"  # the embedded SmolLM2-135M-Instruct tokenizer, with its template
PROMPT = "Give the city name only, plain text. The capital of Germany is called simply"


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_the_prompt_is_read_as_a_user_turn(lens_project: LensProject, how: str) -> None:
    from transformers import AutoTokenizer

    if how == "ini":
        lens_project.ini("lens_chat_template = true")
    flags = ["--lens-chat-template"] if how == "flag" else []
    created = lens_project.run(f"--lens-models={MODEL}", *flags, "--snapshot-update")
    created.assert_outcomes(passed=len(GENERATED))
    golden = read_golden(lens_project.golden(MODEL).with_name("cpu-float32.chat.json"))
    assert golden["settings"]["chat_template"] is True
    tok = AutoTokenizer.from_pretrained(resolve_model(MODEL).path)
    text = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, add_special_tokens=False)["input_ids"]
    entry = golden["prompts"]["capital-de"]["tokenization"]
    assert entry["input_ids"] == ids and len(ids) > 30  # the system turn and the user turn
    assert "".join(entry["tokens"]).endswith("<|im_start|>assistant\n")  # the generation prompt
    lens_project.run(f"--lens-models={MODEL}", *flags).assert_outcomes(passed=len(GENERATED))


def test_a_tokenizer_without_a_template_is_refused_in_one_line(lens_project: LensProject) -> None:
    folder = lens_project.path / "models" / "no-template"
    shutil.copytree(resolve_model(MODEL).path, folder)
    (folder / "chat_template.jinja").unlink()
    result = lens_project.run("--lens-models=models/no-template", "--lens-chat-template")
    assert failed_models(result) == {"models/no-template": set(GENERATED)}
    out = result.stdout.str()
    message = (
        "lenscheck: models/no-template: --chat-template was asked for, but this model's "
        "tokenizer has no chat template"
    )
    assert out.count(message) == len(GENERATED)  # every test says it, in one line each
    assert "Traceback" not in out and "def lens_run" not in out
