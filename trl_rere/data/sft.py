"""The prompt-completion view of a split for TRL's `SFTTrainer` (the SFT warm start, METHOD 6)."""

from __future__ import annotations

from datasets import Dataset

from ..item_format import ItemFormat, get_item_format


def sft_dataset(
    dataset: Dataset, completion_template: str | None = None, item_format: str | ItemFormat = "title"
) -> Dataset:
    """The prompt-completion view for TRL's `SFTTrainer` (METHOD 6): `prompt` as is, `completion` the target written
    as `item_format` writes it (`'"{title}"\\n'` for titles, `'{title}\\n'` for SIDs; `completion_template`
    overrides it); SFTTrainer appends EOS and, for prompt-completion data, trains on the completion only.

    Example:
    ```python
    >>> from trl_rere.data import sft_dataset, synthetic_catalog_dataset
    >>> _, dataset = synthetic_catalog_dataset(num_items=16, num_users=4)
    >>> sft_dataset(dataset)[0]["completion"] == f'"{dataset[0]["target"]}"\\n'
    True
    ```
    """
    item_format = get_item_format(item_format, completion_template)
    for column in ("prompt", "target"):
        if column not in dataset.column_names:
            raise ValueError(f"sft_dataset needs a '{column}' column (has {dataset.column_names})")
    completions = [item_format.render(t) for t in dataset["target"]]
    return Dataset.from_dict({"prompt": dataset["prompt"], "completion": completions})
