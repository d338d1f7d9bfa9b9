"""The answer checkers on known good and bad answers, and the shipped suites' integrity."""

import pytest

from llm_ladder.quality.checkers import check_exact, check_instructions, last_number, normalize, validate_instruction
from llm_ladder.quality.suites import SuiteError, load_suite


def _passes(instruction, kwargs, response, prompt="p"):
    strict, loose = check_instructions(prompt, response, [instruction], [kwargs])[instruction]
    return strict, loose


@pytest.mark.parametrize(
    ("instruction", "kwargs", "good", "bad"),
    [
        ("change_case:english_lowercase", {}, "the cat is lost near the park.", "The cat is lost near the park."),
        ("change_case:english_capital", {}, "THE SKY IS BLUE IN THE DAY.", "The SKY is blue in the day."),
        ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "one two three", "a b c d e f"),
        ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", "* one\n* two\n* three"),
        ("detectable_format:json_format", {}, '```json\n{"name": "Crumbs"}\n```', "name: Crumbs"),
        ("keywords:forbidden_words", {"forbidden_words": ["metal"]}, "A robot dreamed.", "A metal robot."),
        ("detectable_format:title", {}, "<<Autumn>>\nLeaves fall.", "Autumn\nLeaves fall."),
        ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Thanks!\nP.S. see you", "Thanks!"),
        ("punctuation:no_comma", {}, "Rest and read and walk.", "Rest, read, walk."),
        ("detectable_format:constrained_response", {}, "My answer is yes.", "Yes, it is round."),
        (
            "startend:end_checker",
            {"end_phrase": "Enjoy your tea."},
            "Boil water. Enjoy your tea.",
            "Enjoy your tea. Bye",
        ),
        ("startend:quotation", {}, '"Summer, for the sun."', "Summer, for the sun."),
        ("keywords:frequency", {"keyword": "movie", "frequency": 2, "relation": "at least"}, "movie movie", "movie"),
        ("combination:two_responses", {}, "Fresh brew\n******\nWake up happy", "Fresh brew"),
        ("detectable_content:number_placeholders", {"num_placeholders": 2}, "At [address] on [date].", "At noon."),
        ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "The *deep* sea.", "The deep sea."),
    ],
)
def test_instruction_checkers_on_known_answers(instruction, kwargs, good, bad):
    assert _passes(instruction, kwargs, good) == (True, True)
    assert _passes(instruction, kwargs, bad)[0] is False


def test_sentence_counts_use_the_shipped_punkt_parameters():
    """Abbreviations do not end sentences; this needs the punkt_tab data shipped in the package."""
    kwargs = {"num_sentences": 3, "relation": "less than"}
    assert _passes("length_constraints:number_sentences", kwargs, "Dr. Smith came. Mr. Jones left.") == (True, True)
    assert _passes("length_constraints:number_sentences", kwargs, "One. Two. Three.")[0] is False


def test_loose_mode_forgives_a_preamble_line_and_markdown():
    response = "Sure! Here is my answer:\nthe cat is lost near the park."
    assert _passes("change_case:english_lowercase", {}, response) == (False, True)
    assert _passes("punctuation:no_comma", {}, "Sure, here:\nno commas at all") == (False, True)


def test_thinking_is_not_part_of_the_answer():
    assert _passes(
        "change_case:english_lowercase", {}, "<think>Let Me think</think>the cat is lost near the park."
    ) == (True, True)


def test_empty_answer_fails_everything():
    assert _passes("punctuation:no_comma", {}, "   ") == (False, False)


@pytest.mark.parametrize(
    ("response", "kind", "answers", "expected"),
    [
        ("42", "number", ["42"], True),
        ("The answer is 42.", "number", ["42"], True),
        ("17 + 25 = 42", "number", ["42"], True),
        ("1,000 meters", "number", ["1000"], True),
        ("Seven.", "number", ["7"], True),
        ("2.50", "number", ["2.5"], True),
        ("41", "number", ["42"], False),
        ("\n\n42\nbecause 6 times 7", "number", ["42"], True),
        ("42 is wrong, it is 43", "number", ["42"], False),
        ("no idea", "number", ["42"], False),
        ("Paris.", "text", ["Paris"], True),
        ("The capital of France is Paris.", "text", ["Paris"], True),
        ("Parisian", "text", ["Paris"], False),
        ("William Shakespeare", "text", ["Shakespeare", "William Shakespeare"], True),
        ("CO2", "text", ["carbon dioxide", "CO2"], True),
        ("Oxygen", "text", ["carbon dioxide", "CO2"], False),
        ("'ababab'", "text", ["ababab"], True),
        ("The Pacific Ocean", "text", ["Pacific"], True),
    ],
)
def test_exact_answers_after_normalization(response, kind, answers, expected):
    assert check_exact(response, kind, answers)[0] is expected


def test_normalization_and_number_extraction():
    assert normalize("  The Quick, brown FOX! ") == "quick brown fox"
    assert last_number("between 3 and -4.5") == -4.5 and last_number("twelve") == 12.0 and last_number("x") is None


@pytest.mark.parametrize(
    ("instruction", "kwargs", "message"),
    [
        ("keywords:nope", {}, "unknown instruction 'keywords:nope'"),
        ("length_constraints:number_words", {"num_words": 5}, "needs relation"),
        ("length_constraints:number_words", {"num_words": 5, "relation": "about"}, "supported relation"),
    ],
)
def test_instructions_are_validated_so_none_is_skipped_or_randomized(instruction, kwargs, message):
    with pytest.raises(ValueError, match=message):
        validate_instruction(instruction, kwargs)


@pytest.mark.parametrize("name", ["instructions", "exact"])
def test_shipped_suites_load_with_at_least_40_items(name):
    suite = load_suite(name)
    assert len(suite.items) >= 40 and len({i.id for i in suite.items}) == len(suite.items)


def test_shipped_instruction_suite_covers_many_kinds_of_constraint():
    ids = {i for item in load_suite("instructions").items for i in item.instruction_id_list}
    assert len(ids) >= 20


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nitems:\n  - {id: a, question: q, kind: number, answer: forty}\n", "could not convert"),
        ("name: x\nitems:\n  - {id: a, question: q, answer: b}\n  - {id: a, question: r, answer: c}\n", "duplicate"),
        ("name: x\nitems:\n  - {id: a, question: q}\n", "needs an `answer`"),
        ("name: x\nitems: [\n", "malformed YAML"),
        ("name: x\nitems:\n  - {id: a, prompt: p, instruction_id_list: [punctuation:no_comma], kwargs: []}\n", "equal"),
    ],
)
def test_bad_suite_files_get_one_clear_error(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError, match=message):
        load_suite(path)


def test_unknown_suite_name_lists_the_shipped_ones():
    with pytest.raises(SuiteError, match=r"neither a file nor a shipped suite \(exact, instructions\)"):
        load_suite("nope")
