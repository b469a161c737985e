"""The item format: rendering an item as a completion, parsing a completion back, and validating templates."""

import pytest

from trl_rere import ItemCatalog, ItemTrie
from trl_rere.item_format import ITEM_FORMATS, ItemFormat, get_item_format
from trl_rere.rewards import ranking_reward, rule_reward
from trl_rere.testing import train_tokenizer


TITLES = ['Red "Ball"', "Blue Car {2}", "  spaced  ", "<a_1><b_2><c_3>"]


@pytest.mark.parametrize("name", sorted(ITEM_FORMATS))
def test_parse_inverts_render(name):
    fmt = get_item_format(name)
    for title in TITLES:
        # quotes delimit a title, so its own spaces survive; a SID has none, and decoding may strip the ends
        expected = title if name == "title" else title.strip()
        assert fmt.parse(fmt.render(title)) == expected


def test_the_two_shipped_formats():
    assert get_item_format("title").render("Red Ball") == '"Red Ball"\n'
    assert get_item_format("sid").render("<a_1><b_2><c_3>") == "<a_1><b_2><c_3>\n"
    assert get_item_format("title").prompt_suffix == get_item_format("sid").prompt_suffix == "### Response:\n"
    # decoded text loses EOS and may lose the trailing newline; a conversational completion reads its last message
    assert get_item_format("title").parse('"Red Ball"') == "Red Ball"
    assert get_item_format("sid").parse([{"role": "assistant", "content": "<a_1><b_2><c_3>"}]) == "<a_1><b_2><c_3>"
    # not of the template's shape: returned as it is, naming no item
    assert get_item_format("title").parse('"Red Ball') == '"Red Ball'


@pytest.mark.parametrize("template", ["no placeholder", "{title} and {title}"])
def test_template_needs_the_placeholder_once(template):
    with pytest.raises(ValueError, match="exactly once"):
        ItemFormat("custom", template)
    with pytest.raises(ValueError, match="exactly once"):
        get_item_format("title", completion_template=template)


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="item_format must be one of"):
        get_item_format("semantic")


def test_overrides_keep_the_rest():
    fmt = get_item_format("title", completion_template="[{title}]\n")
    assert (fmt.name, fmt.prompt_suffix, fmt.render("x")) == ("title", "### Response:\n", "[x]\n")
    assert get_item_format("sid", prompt_suffix=None).prompt_suffix is None


def test_rewards_parse_completions_with_the_format():
    """Without the trainer's beam_title, the rule and ranking rewards read the item with the given format: a custom
    template (previously only quotes were stripped, by hand) and SIDs."""
    fmt = get_item_format("title", completion_template="Item: {title}.\n")
    completions = [fmt.render(t) for t in ("Blue Car", "Red Ball")]
    assert rule_reward(completions, ["Red Ball"] * 2, item_format=fmt) == [0.0, 1.0]
    assert ranking_reward(completions, ["Red Ball"] * 2, item_format=fmt, beam_rank=[0, 1], group_id=[0, 0]) == [
        pytest.approx(-1 / (1 + 1 / 1.584962500721156)),
        0.0,
    ]
    sids = ["<a_1><b_2><c_3>\n", "<a_1><b_2><c_4>\n"]
    assert rule_reward(sids, ["<a_1><b_2><c_4>"] * 2, item_format="sid") == [0.0, 1.0]


def test_the_trie_writes_items_with_its_format():
    from trl_rere import SIDTokenError, add_sid_tokens

    catalog = ItemCatalog.from_titles(["<a_1><b_2><c_3>", "<a_1><b_5><c_6>"])
    tokenizer = train_tokenizer(list(catalog.titles) + ["### Response:\n"], kind="bpe", vocab_size=300)
    with pytest.raises(SIDTokenError, match="<a_1>"):  # a code split into pieces would branch the trie mid-code
        ItemTrie.from_catalog(catalog, tokenizer, item_format="sid")
    add_sid_tokens(tokenizer, catalog)
    trie = ItemTrie.from_catalog(catalog, tokenizer, item_format="sid")
    assert trie.item_format == get_item_format("sid") and trie.completion_template == "{title}\n"
    expected = tokenizer("### Response:\n<a_1><b_2><c_3>\n", add_special_tokens=False)["input_ids"]
    suffix = tokenizer("### Response:\n", add_special_tokens=False)["input_ids"]
    assert trie.title_token_ids(0) == expected[len(suffix):] + [tokenizer.eos_token_id]
