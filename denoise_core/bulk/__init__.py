"""The Ray-free core of ``denoise run``, one job per module.

- :mod:`.settings`: the frozen :class:`RunSettings`, built and checked once.
- :mod:`.plan`: listing INPUT, output keys, references, resume (what to do).
- :mod:`.rows`: the row contract between stages (work, decoded, result rows).
- :mod:`.pixels`, :mod:`.steps`: per-image array work and steps, shared by both paths.
- :mod:`.processor`: the fused path (everything in the model actor).
- :mod:`.split`: the split path (decode, denoise, finish as separate stages).
- :mod:`.stages`: the fused path's callable class for ``map_batches``.
- :mod:`.denoisers`: what an actor loads (a Keras model, or ``identity``).
- :mod:`.outputs`, :mod:`.samples`: tables, summary, report samples.
- :mod:`.runner`: the run's sequence (plan → execute → aggregate → write → report).

Resume rule: an image whose output already exists is not denoised again; its
metrics are recomputed from the existing output file (so ``metrics.parquet``
always describes the files on disk). ``overwrite=True`` denoises every image again.
The names below are the package's public surface.
"""

from .outputs import (
    METRICS_SCHEMA,
    group_columns,
    metrics_records,
    metrics_table,
    noise_removed,
    summarize,
    summary_json,
    summary_line,
)
from .pixels import (
    DEPTH16_FORMATS,
    LOSSY_FORMATS,
    check_reference,
    check_skip_below,
    check_strength,
    color_channels,
    denoise_array,
    encodable,
    score,
)
from .plan import (
    ERRORS_NAME,
    KEEP_FORMAT,
    METRICS_NAME,
    OUTPUT_FORMATS,
    REPORT_NAME,
    RUN_FILES,
    SUMMARY_NAME,
    Plan,
    WorkItem,
    existing_outputs,
    is_dataset,
    key_meta,
    list_images,
    match_references,
    normalize_format,
    output_key,
    overwritten_input,
    parquet_output_key,
    plan_run,
    remove_partial_writes,
)
from .processor import BulkProcessor
from .rows import (
    CLEAN_REASON_PREFIX,
    METRIC_FIELDS,
    RESULT_FIELDS,
    SKIPPED_EXISTING,
    InputError,
    batch_to_rows,
    copied_unchanged,
    error_row,
    parquet_rows,
    plain,
    read_inputs,
    rows_to_batch,
    work_rows,
)
from .samples import load_sample, pick_samples
from .settings import IDENTITY_MODEL, RunRefused, RunSettings, build_settings, choose_pipeline

__all__ = [
    "CLEAN_REASON_PREFIX",
    "DEPTH16_FORMATS",
    "ERRORS_NAME",
    "IDENTITY_MODEL",
    "KEEP_FORMAT",
    "LOSSY_FORMATS",
    "METRICS_NAME",
    "METRICS_SCHEMA",
    "METRIC_FIELDS",
    "OUTPUT_FORMATS",
    "REPORT_NAME",
    "RESULT_FIELDS",
    "RUN_FILES",
    "SKIPPED_EXISTING",
    "copied_unchanged",
    "SUMMARY_NAME",
    "BulkProcessor",
    "InputError",
    "Plan",
    "RunRefused",
    "RunSettings",
    "WorkItem",
    "batch_to_rows",
    "build_settings",
    "check_reference",
    "check_skip_below",
    "check_strength",
    "choose_pipeline",
    "color_channels",
    "denoise_array",
    "encodable",
    "error_row",
    "existing_outputs",
    "group_columns",
    "is_dataset",
    "key_meta",
    "list_images",
    "load_sample",
    "match_references",
    "metrics_records",
    "metrics_table",
    "noise_removed",
    "normalize_format",
    "output_key",
    "overwritten_input",
    "parquet_rows",
    "parquet_output_key",
    "pick_samples",
    "plain",
    "plan_run",
    "read_inputs",
    "remove_partial_writes",
    "rows_to_batch",
    "score",
    "summarize",
    "summary_json",
    "summary_line",
    "work_rows",
]
