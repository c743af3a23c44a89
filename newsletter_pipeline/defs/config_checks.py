"""The rules of settings that need what the work packages know, given to config.load_config.

config.py declares every setting and checks what a setting alone says (numbers, dates, JSON, URLs); it imports
nothing from the package. The rules below know the item fields, S3 locations, the spreadsheet key's form, the
embedding backends and devices and the clustering accelerators, each declared once in its work package.
`load_settings` checks the whole environment with both, so one ConfigError still lists every problem.
"""

import json
from collections.abc import Mapping

from newsletter_pipeline import config
from newsletter_pipeline.clustering import gpu
from newsletter_pipeline.embedding import embed
from newsletter_pipeline.items.parse import ALIASES
from newsletter_pipeline.storage import is_s3_uri, split_s3_uri


def column_map_fields(value: str) -> str | None:
    unknown = sorted({field for field in json.loads(value).values() if field not in ALIASES})
    return f"maps to unknown fields {', '.join(unknown)}; the fields are {', '.join(ALIASES)}" if unknown else None


def s3_bucket(value: str) -> str | None:
    try:
        if is_s3_uri(value):
            split_s3_uri(value)
    except ValueError:
        return "names no bucket; set s3://bucket/prefix"
    return None


def landing_buckets(value: str) -> str | None:
    return next(filter(None, map(s3_bucket, config.split_locations(value))), None)


def s3_only(value: str) -> str | None:
    if not all(is_s3_uri(location) for location in config.split_locations(value)):
        return "prod keeps it on S3 (every run worker must see the same files); set s3://bucket/prefix"
    return None


def spreadsheet_key(value: str) -> str | None:
    # Imported here: the Sheets client pulls in gspread and google-auth, which a run without a key never needs.
    from newsletter_pipeline.publishing.sheets import SPREADSHEET_KEY

    if SPREADSHEET_KEY.fullmatch(value):
        return None
    return "set the spreadsheet's key alone (the part of its URL after /d/), not a URL"


CHECKS = {
    "NEWSLETTER_COLUMN_MAP": column_map_fields,
    "NEWSLETTER_LANDING_DIR": landing_buckets,
    "NEWSLETTER_OUTPUT_ROOT": s3_bucket,
    "NEWSLETTER_SPREADSHEET_KEY": spreadsheet_key,
    "NEWSLETTER_EMBED_DEVICE": config.one_of(*embed.DEVICES),
    "NEWSLETTER_EMBED_BACKEND": config.one_of(*embed.BACKENDS),
    "NEWSLETTER_CLUSTER_ACCELERATOR": config.one_of(*gpu.ACCELERATORS),
}
PROD_CHECKS = {"NEWSLETTER_LANDING_DIR": s3_only, "NEWSLETTER_OUTPUT_ROOT": s3_only}


def load_settings(env: Mapping[str, str] | None = None) -> config.Config:
    """The configuration of `env` (default: os.environ) checked whole, by config.py's rules and these."""
    return config.load_config(env, CHECKS, PROD_CHECKS)
