"""The same pipeline on a schema nobody here designed: Chinook (self-reference, composite key)."""

import json

import duckdb
import pandas as pd

from synth_pipeline.config import PipelineConfig
from synth_pipeline.privacy_labels import renamed_real
from synth_pipeline.schema.detect import detect_metadata
from synth_pipeline_tests.conftest import (
    count_orphans,
    materialize_all,
    require_dataset,
)


def test_chinook_end_to_end_with_zero_fk_violations(tmp_path):
    source = require_dataset("chinook") / "Chinook_Sqlite.sqlite"
    metadata = detect_metadata(source)
    config = PipelineConfig(source=source, metadata_path=None, out_dir=tmp_path / "out", steps=15, seed=2)
    result = materialize_all(metadata, config)
    assert result.success
    with duckdb.connect(str(config.out_dir / "synthetic.duckdb"), read_only=True) as con:
        for rel in metadata.relationships:
            assert count_orphans(con, rel) == 0, rel.label
        pairs = con.execute('SELECT count(*), count(DISTINCT ("PlaylistId", "TrackId")) FROM "PlaylistTrack"').fetchone()
        assert pairs[0] == pairs[1] and pairs[0] > 0.99 * 8715  # composite key unique, (almost) no pair lost
        managers = con.execute('SELECT count(*) FROM "Employee" WHERE "ReportsTo" IS NULL').fetchone()[0]
        assert managers >= 1  # the self-reference has a root (no cycle)
        per_media = 'SELECT m."Name", count(*) FROM "Track" t JOIN "MediaType" m USING ("MediaTypeId") GROUP BY 1'
        synthetic_media = dict(con.execute(per_media).fetchall())
        genres = {g for (g,) in con.execute('SELECT "Name" FROM "Genre"').fetchall()}
    with duckdb.connect(str(config.out_dir / "real.duckdb"), read_only=True) as con:
        real_media = dict(con.execute(per_media).fetchall())
        real_genres = {g for (g,) in con.execute('SELECT "Name" FROM "Genre"').fetchall()}
    assert real_media["MPEG audio file"] == 3034
    # a lookup table's labels are each one real row, so each is published as its stand-in
    # (privacy_min_count 5), and each stand-in keeps its label's real tracks
    stand_ins = renamed_real(pd.DataFrame({"Name": list(real_media)}), metadata, "MediaType", config.seed, 5)
    assert synthetic_media == dict(zip(stand_ins["Name"], real_media.values()))
    assert not genres & real_genres and len(genres) == len(real_genres)

    summary = json.loads((config.out_dir / "report.json").read_text())["synth_pipeline"]["summary"]
    assert summary["key_format_adherence_min"] == 1.0  # every key column in its real format
    assert summary["verbatim_identity_strings"] == 0  # no real email, phone, address or full name
    assert summary["copied_rows"] == 0
    assert summary["constraints_fully_satisfied"] == summary["constraints_discovered"] > 0
