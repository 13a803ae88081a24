"""Held-out line completion: prompts must cut the text where the tokenizer cuts it."""

from __future__ import annotations

from codefill.quantize.evaluate import line_samples


def _source(k: int) -> str:
    body = []
    for i in range(30):
        body.append(f"def function_{k}_{i}(value, other):")
        body.append(f"    if value > {i}:")
        body.append(f"        result = value * other + {k}")
        body.append("        return result")
    return "\n".join(body) + "\n"


def test_line_prompts_are_a_token_prefix_of_the_text(tmp_path):
    """A prompt that ends at a bare line break before an indented line is tokenized differently from the same text
    inside the file ("\\n" + "       " + " result" merges): the model then sees a token it never saw there and
    predicts column-0 code. The prompt must be a token prefix of the file's own tokenization."""
    from codefill.engine.llama import LlamaRuntime
    from codefill.engine.models import embedded_model_path

    files = []
    for k in range(6):
        p = tmp_path / f"mod{k}.py"
        p.write_text(_source(k))
        files.append(str(p))
    samples = line_samples(files, n=6, prefix_chars=400)
    assert len(samples) == 6
    texts = {f: open(f).read() for f in files}
    tok = LlamaRuntime(embedded_model_path(), vocab_only=True)
    indented = 0
    for prompt, expected in samples:
        src = next(t for t in texts.values() if prompt in t)
        full = src[src.index(prompt):]  # the prompt, then the expected line and the rest of the file
        assert full[len(prompt):].lstrip(" ").startswith(expected)
        a, b = tok.tokenize(prompt), tok.tokenize(full)
        assert b[: len(a)] == a, (prompt[-20:], expected)
        indented += full[len(prompt)] == " "
    assert indented >= 3  # the case that used to break is exercised
