"""The workshop's prompts, the texts of the default workloads: its Jetson Thor question (short), a long
technical guide (long decode), and an edit that copies its prompt (where n-gram speculation wins)."""

from llm_ladder.data import DATA_DIR

WORKSHOP_PROMPT = (
    "Write a 5-sentence paragraph explaining the main benefit of using Jetson Thor "
    "for an autonomous robotics developer."
)
LONG_PROMPT = (
    "Write a detailed technical guide for a robotics team deploying a language model on an edge device. "
    "Cover hardware selection, memory budgeting, quantization, serving, monitoring and failure recovery, "
    "with several paragraphs for each topic."
)
EDIT_PROMPT = (
    "Rewrite the following text exactly as it is, word for word, but replace every occurrence of the word "
    '"robot" with "rover". Output only the rewritten text.\n\n' + (DATA_DIR / "edit_passage.md").read_text()
)
"""An edit task: the answer copies most of its prompt, which is where n-gram / suffix speculation wins for real
(drafts come from the prompt and are accepted because the text is being copied, not because it loops)."""
