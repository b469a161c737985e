"""How an item is written after the prompt: the prompt's fixed ending, the completion template, and parsing back.

Every part of the package that writes or reads an item's text (the trie, the SFT data, the rewards, the examples)
goes through an `ItemFormat`, so a new way of naming items is one more format here and nothing else. Two ship:

- `"title"`: the ReRe/D3 authors' format, the title in double quotes and a newline (`'"Red Ball"\\n'`);
- `"sid"`: MiniOneRec's semantic IDs, the code tokens as they are and a newline (`'<a_12><b_40><c_7>\\n'`).

Both follow a prompt ending in `"### Response:\\n"`; the model appends EOS after the completion.

Example:
```python
>>> from trl_rere.item_format import get_item_format
>>> title = get_item_format("title")
>>> title.render("Red Ball")
'"Red Ball"\\n'
>>> title.parse('"Red Ball"\\n')
'Red Ball'
>>> get_item_format("sid").render("<a_12><b_40><c_7>")
'<a_12><b_40><c_7>\\n'
```
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


PLACEHOLDER = "{title}"
DEFAULT_PROMPT_SUFFIX = "### Response:\n"
DEFAULT_COMPLETION_TEMPLATE = '"{title}"\n'
SID_COMPLETION_TEMPLATE = "{title}\n"
SID_CODE_PATTERN = r"<[A-Za-z]+_[0-9]+>"


def validate_completion_template(template: str, argument: str = "completion_template") -> tuple[str, str]:
    """Checks that `template` holds the item placeholder exactly once and returns the text around it."""
    if not isinstance(template, str):
        raise TypeError(f"{argument} must be a string, got {type(template).__name__}")
    count = template.count(PLACEHOLDER)
    if count != 1:
        raise ValueError(
            f"{argument} {template!r} must contain the item placeholder {PLACEHOLDER!r} exactly once (found {count})"
        )
    head, tail = template.split(PLACEHOLDER)
    return head, tail


@dataclass(frozen=True)
class ItemFormat:
    """One way of writing an item as the model's completion.

    Parameters:
        name (`str`):
            Short name (`"title"`, `"sid"`), used in messages and configs.
        completion_template (`str`):
            The completion for an item, with `{title}` standing for the item's text (its title, or its SID string).
            EOS is not part of it: the trie and SFT append the tokenizer's EOS.
        prompt_suffix (`str` or `None`):
            The fixed ending every prompt has. Completions are tokenized after it, so that BPE merges at the boundary
            match what the model sees; `None` tokenizes completions on their own.
        code_pattern (`str` or `None`):
            A regular expression of one code, for items written as a string of codes that must each be one token
            (semantic IDs: `<a_12>`); the trie then checks the tokenizer (`trl_rere.sid_tokens`) and the scripts add
            the codes to it. `None` for items written as text.
        layout (`str`):
            The file layout its data comes in (`trl_rere.data.LAYOUTS`): `"d3"`, the ReRe/D3 title files, or
            `"minionerec"`, MiniOneRec's semantic-ID files.

    Example:
    ```python
    >>> from trl_rere import ItemFormat
    >>> answer = ItemFormat("answer", completion_template="Answer: {title}\\n", prompt_suffix="### Response:\\n")
    >>> answer.render("Red Ball"), answer.parse("Answer: Red Ball")
    ('Answer: Red Ball\\n', 'Red Ball')
    ```
    """

    name: str
    completion_template: str = DEFAULT_COMPLETION_TEMPLATE
    prompt_suffix: str | None = DEFAULT_PROMPT_SUFFIX
    code_pattern: str | None = None
    layout: str = "d3"
    _head: str = field(init=False, repr=False, compare=False)
    _tail: str = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        head, tail = validate_completion_template(self.completion_template)
        if self.prompt_suffix is not None and not isinstance(self.prompt_suffix, str):
            raise TypeError(f"prompt_suffix must be a string or None, got {type(self.prompt_suffix).__name__}")
        # frozen dataclass: the split template is derived once
        object.__setattr__(self, "_head", head)
        object.__setattr__(self, "_tail", tail)

    def render(self, item: str) -> str:
        """The completion text of `item` (without EOS). Braces in the item are kept as they are."""
        return self._head + item + self._tail

    def parse(self, completion) -> str:
        """The item text of a decoded completion: the inverse of `render`.

        Decoding drops EOS and may drop the template's surrounding whitespace, so both ends are compared without it.
        A completion that does not have the template's shape is returned stripped, as it is: it names no item (the
        rule reward then gives it 0). Conversational completions (`[{"role": "assistant", "content": ...}]`) are read
        from their last message.
        """
        if isinstance(completion, list):
            completion = completion[-1]["content"]
        text = completion.strip()
        head, tail = self._head.lstrip(), self._tail.rstrip()
        if len(text) >= len(head) + len(tail) and text.startswith(head) and text.endswith(tail):
            return text[len(head) : len(text) - len(tail)]
        return text


ITEM_FORMATS: dict[str, ItemFormat] = {
    "title": ItemFormat("title", DEFAULT_COMPLETION_TEMPLATE, DEFAULT_PROMPT_SUFFIX),
    "sid": ItemFormat(
        "sid", SID_COMPLETION_TEMPLATE, DEFAULT_PROMPT_SUFFIX, code_pattern=SID_CODE_PATTERN, layout="minionerec"
    ),
}


def get_item_format(
    item_format: str | ItemFormat = "title",
    completion_template: str | None = None,
    prompt_suffix: str | None | type(...) = ...,
) -> ItemFormat:
    """The `ItemFormat` named `item_format` (or the format itself), with its template or suffix replaced if given.

    `prompt_suffix=None` means "tokenize completions on their own", so "not given" is `...`.

    Example:
    ```python
    >>> from trl_rere import get_item_format
    >>> get_item_format("sid").completion_template, get_item_format("title", "<{title}>\\n").render("Red Ball")
    ('{title}\\n', '<Red Ball>\\n')
    ```
    """
    if isinstance(item_format, ItemFormat):
        base = item_format
    else:
        if item_format not in ITEM_FORMATS:
            raise ValueError(f"item_format must be one of {sorted(ITEM_FORMATS)}, got {item_format!r}")
        base = ITEM_FORMATS[item_format]
    if completion_template is None and prompt_suffix is ...:
        return base
    return replace(
        base,
        completion_template=base.completion_template if completion_template is None else completion_template,
        prompt_suffix=base.prompt_suffix if prompt_suffix is ... else prompt_suffix,
    )
