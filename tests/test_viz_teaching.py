"""viz.teaching: folded, computed answers for the notebooks' "try this" prompts."""
import pytest

from viz.teaching import answer, answer_markdown


def test_answer_is_a_folded_details_block_with_markdown_inside():
    text = answer_markdown("**42** tokens", summary="Why?")
    assert text.startswith("<details><summary>Why?</summary>\n\n")
    assert "**42** tokens" in text and text.endswith("\n\n</details>")
    assert answer("x").data == answer_markdown("x")


@pytest.mark.parametrize("bad", ["", "   ", None, 3])
def test_empty_or_non_string_answer_is_refused(bad):
    with pytest.raises(ValueError, match="text"):
        answer_markdown(bad)
    with pytest.raises(ValueError, match="summary"):
        answer_markdown("ok", summary=bad)
