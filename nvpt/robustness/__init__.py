"""Robustness evaluation: the seeded ImageNet-C / CIFAR-10-C corruption suite and the tables built from its accuracies."""
from nvpt.robustness.corruptions import (
    COMMON,
    EXTRA,
    FAMILIES,
    GAUSSIAN,
    SEVERITIES,
    SEVERITY_TABLES,
    TABLES,
    check_set,
    corrupt,
    corruption_grid,
    corruption_param,
    expand_corruptions,
    family_of,
    resolve_table,
)
from nvpt.robustness.report import (
    CSV_COLUMNS,
    aggregate_seeds,
    markdown_table,
    paired_gain,
    parse_set_key,
    set_key,
    side_by_side_markdown,
    summarize,
    t_critical_95,
    write_csv,
    write_json,
)

__all__ = [
    "COMMON", "EXTRA", "FAMILIES", "GAUSSIAN", "SEVERITIES", "SEVERITY_TABLES", "TABLES", "check_set", "corrupt",
    "corruption_grid", "corruption_param", "expand_corruptions", "family_of", "resolve_table",
    "CSV_COLUMNS", "aggregate_seeds", "markdown_table", "paired_gain", "parse_set_key", "set_key",
    "side_by_side_markdown", "summarize", "t_critical_95", "write_csv", "write_json",
]
