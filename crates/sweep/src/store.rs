//! The study store: one SQLite file (`study.sqlite`) in the study directory.
//!
//! Tables (schema version [`STUDY_SCHEMA_VERSION`], kept in `PRAGMA user_version`):
//!
//! - `meta(key, value)`: the study spec (TOML) and its name;
//! - `runs`: one row per planned run of either kind (`kind`: `lm` or `classify`), keyed by
//!   run id, with the spec its child process trains (JSON), shape, parameter counts in both
//!   conventions, planned tokens and FLOPs, budget, status (`planned`, `completed`,
//!   `diverged`, `failed`), final metrics and the whole run record; a classification run
//!   also keeps its cell of the grid (`cell_json`), its token columns count samples and its
//!   shape columns are 0;
//! - `curves(run_id, tokens, ...)`: every evaluation of every finished language-model run.
//!
//! Version 1 stores kept finished classification runs in a table of their own
//! (`classify_runs`); opening one moves them into `runs` and drops that table.
//!
//! A run's result is written in one transaction, so a study killed at any moment leaves each
//! run either recorded whole or not at all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use scalelab_spec::{
    ClassifyRecord, RunKind, RunRecord, RunState, RunStatus, STUDY_SCHEMA_VERSION,
    StoredCurvePoint, StoredRun, StudyCell,
};

use crate::{PlannedClassify, PlannedRun, SweepError};

/// File name of the store inside a study directory.
pub const STORE_FILE: &str = "study.sqlite";

/// The open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'lm',
    cell_json TEXT,
    size TEXT NOT NULL,
    seed INTEGER NOT NULL,
    n_layers INTEGER NOT NULL,
    d_model INTEGER NOT NULL,
    n_heads INTEGER NOT NULL,
    params_total INTEGER NOT NULL,
    params_non_embedding INTEGER NOT NULL,
    n REAL NOT NULL,
    param_convention TEXT NOT NULL,
    flops_per_token REAL NOT NULL,
    planned_tokens INTEGER NOT NULL,
    planned_flops REAL NOT NULL,
    budget_kind TEXT NOT NULL,
    budget_value REAL NOT NULL,
    spec_json TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'planned',
    tokens_seen INTEGER NOT NULL DEFAULT 0,
    train_flops REAL NOT NULL DEFAULT 0,
    final_val_loss REAL,
    final_val_bpb REAL,
    wall_secs REAL NOT NULL DEFAULT 0,
    message TEXT,
    record_json TEXT,
    unique_train_tokens INTEGER
);
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    step INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    flops REAL NOT NULL,
    train_loss REAL,
    val_loss REAL NOT NULL,
    val_bpb REAL NOT NULL,
    lr REAL NOT NULL,
    wall_secs REAL NOT NULL,
    PRIMARY KEY (run_id, tokens)
);
";

impl Store {
    /// Opens (creating if needed) the store of `study_dir`.
    pub fn open(study_dir: &Path) -> Result<Store, SweepError> {
        std::fs::create_dir_all(study_dir).map_err(|e| SweepError::io(study_dir, e))?;
        let path = study_dir.join(STORE_FILE);
        let err = |source| SweepError::Store {
            path: path.clone(),
            source,
            hint: "the file may be damaged or held by another program; if damaged, `scalelab study repair DIR` keeps it aside and rebuilds the store from the runs' records (or move it aside and run the study again: finished runs are re-imported)",
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        let has_tables: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        let migrate_v1 = has_tables && version == 1;
        if has_tables && !migrate_v1 && version != i64::from(STUDY_SCHEMA_VERSION) {
            return Err(SweepError::SchemaVersion {
                path,
                found: version,
                expected: i64::from(STUDY_SCHEMA_VERSION),
            });
        }
        if migrate_v1 {
            conn.execute_batch(
                "ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'lm';
                 ALTER TABLE runs ADD COLUMN cell_json TEXT;",
            )
            .map_err(err)?;
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        // Stores written before the training split's size was kept gain the column (empty).
        let has_unique: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('runs') WHERE name = 'unique_train_tokens'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if !has_unique {
            conn.execute_batch("ALTER TABLE runs ADD COLUMN unique_train_tokens INTEGER")
                .map_err(err)?;
        }
        let mut store = Store { conn, path };
        if migrate_v1 {
            store.migrate_v1()?;
        }
        store
            .conn
            .pragma_update(None, "user_version", i64::from(STUDY_SCHEMA_VERSION))
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Path of the SQLite file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> SweepError {
        SweepError::Store {
            path: self.path.clone(),
            source,
            hint: "the file may be damaged or held by another program",
        }
    }

    /// Sets a metadata value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), SweepError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, SweepError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Adds planned runs; runs already present keep their status and results.
    pub fn add_planned(&mut self, runs: &[PlannedRun], convention: &str) -> Result<(), SweepError> {
        let tx = self.conn.transaction().map_err(|e| SweepError::Store {
            path: self.path.clone(),
            source: e,
            hint: "the file may be held by another program",
        })?;
        for r in runs {
            let spec_json =
                serde_json::to_string(&r.spec).map_err(|source| SweepError::Serialise {
                    path: self.path.clone(),
                    what: "a planned run's spec",
                    source,
                })?;
            tx.execute(
                "INSERT OR IGNORE INTO runs (run_id, size, seed, n_layers, d_model, n_heads,
                    params_total, params_non_embedding, n, param_convention, flops_per_token,
                    planned_tokens, planned_flops, budget_kind, budget_value, spec_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    r.run_id,
                    r.size,
                    r.seed as i64,
                    r.config.model.n_layers as i64,
                    r.config.model.d_model as i64,
                    r.config.model.n_heads as i64,
                    r.params.total as i64,
                    r.params.non_embedding as i64,
                    r.n,
                    convention,
                    r.flops_per_token,
                    r.tokens as i64,
                    r.flops,
                    r.budget.kind(),
                    r.budget.value(),
                    spec_json,
                ],
            )
            .map_err(|e| SweepError::Store {
                path: self.path.clone(),
                source: e,
                hint: "the file may be damaged",
            })?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Records a finished (or diverged) run and its curve, in one transaction.
    pub fn record(&mut self, record: &RunRecord) -> Result<(), SweepError> {
        let path = self.path.clone();
        let err = |source| SweepError::Store {
            path: path.clone(),
            source,
            hint: "the file may be damaged or held by another program",
        };
        let status = RunState::from(&record.status).name();
        let message = match &record.status {
            RunStatus::Completed => None,
            RunStatus::Diverged { reason, .. } => Some(reason.clone()),
        };
        let json = serde_json::to_string(record).map_err(|source| SweepError::Serialise {
            path: path.clone(),
            what: "a run record",
            source,
        })?;
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "UPDATE runs SET status = ?2, tokens_seen = ?3, train_flops = ?4, final_val_loss = ?5,
                final_val_bpb = ?6, wall_secs = ?7, message = ?8, record_json = ?9,
                unique_train_tokens = ?10
             WHERE run_id = ?1",
            params![
                record.run_id,
                status,
                record.result.tokens_seen as i64,
                record.result.train_flops,
                record.result.final_val_loss,
                record.result.final_val_bpb,
                record.wall_secs,
                message,
                json,
                record.result.unique_train_tokens.map(|u| u as i64),
            ],
        )
        .map_err(err)?;
        tx.execute("DELETE FROM curves WHERE run_id = ?1", [&record.run_id])
            .map_err(err)?;
        for p in &record.result.curve {
            tx.execute(
                "INSERT OR REPLACE INTO curves
                    (run_id, step, tokens, flops, train_loss, val_loss, val_bpb, lr, wall_secs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    record.run_id,
                    p.step as i64,
                    p.tokens as i64,
                    p.flops,
                    p.train_loss,
                    p.val_loss,
                    p.val_bpb,
                    p.lr,
                    p.wall_secs,
                ],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Marks a run failed (it will be tried again on the next `study run`).
    pub fn mark_failed(&self, run_id: &str, message: &str) -> Result<(), SweepError> {
        self.conn
            .execute(
                "UPDATE runs SET status = 'failed', message = ?2 WHERE run_id = ?1",
                params![run_id, message],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Marks `run_id` interrupted (stopped at a checkpoint; not recorded, so resumed next).
    pub fn mark_interrupted(&self, run_id: &str) -> Result<(), SweepError> {
        self.conn
            .execute(
                "UPDATE runs SET status = 'interrupted', message = ?2 WHERE run_id = ?1",
                params![
                    run_id,
                    "interrupted by Ctrl-C or SIGTERM at a checkpoint; the next study run resumes it"
                ],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Every run, in planned-FLOPs order.
    pub fn runs(&self) -> Result<Vec<StoredRun>, SweepError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_id, size, seed, n_layers, d_model, n_heads, params_total,
                    params_non_embedding, n, param_convention, flops_per_token, planned_tokens,
                    planned_flops, budget_kind, budget_value, status, tokens_seen, train_flops,
                    final_val_loss, final_val_bpb, wall_secs, message, unique_train_tokens, kind
                 FROM runs ORDER BY planned_flops, run_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredRun {
                    run_id: r.get(0)?,
                    kind: {
                        let name: String = r.get(23)?;
                        RunKind::from_name(&name).ok_or_else(|| {
                            rusqlite::Error::FromSqlConversionFailure(
                                23,
                                rusqlite::types::Type::Text,
                                format!("unknown run kind `{name}` (lm or classify)").into(),
                            )
                        })?
                    },
                    size: r.get(1)?,
                    seed: r.get::<_, i64>(2)? as u64,
                    n_layers: r.get::<_, i64>(3)? as u64,
                    d_model: r.get::<_, i64>(4)? as u64,
                    n_heads: r.get::<_, i64>(5)? as u64,
                    params_total: r.get::<_, i64>(6)? as u64,
                    params_non_embedding: r.get::<_, i64>(7)? as u64,
                    n: r.get(8)?,
                    param_convention: r.get(9)?,
                    flops_per_token: r.get(10)?,
                    planned_tokens: r.get::<_, i64>(11)? as u64,
                    planned_flops: r.get(12)?,
                    budget_kind: r.get(13)?,
                    budget_value: r.get(14)?,
                    status: {
                        let name: String = r.get(15)?;
                        RunState::from_name(&name).ok_or_else(|| {
                            rusqlite::Error::FromSqlConversionFailure(
                                15,
                                rusqlite::types::Type::Text,
                                format!(
                                    "unknown run status `{name}` (planned, completed, diverged or failed)"
                                )
                                .into(),
                            )
                        })?
                    },
                    tokens_seen: r.get::<_, i64>(16)? as u64,
                    train_flops: r.get(17)?,
                    final_val_loss: r.get(18)?,
                    final_val_bpb: r.get(19)?,
                    wall_secs: r.get(20)?,
                    message: r.get(21)?,
                    unique_train_tokens: r.get::<_, Option<i64>>(22)?.map(|u| u as u64),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The evaluation curve of a run, in token order.
    pub fn curve(&self, run_id: &str) -> Result<Vec<StoredCurvePoint>, SweepError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tokens, flops, val_loss, val_bpb, train_loss FROM curves
                 WHERE run_id = ?1 ORDER BY tokens",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([run_id], |r| {
                Ok(StoredCurvePoint {
                    tokens: r.get::<_, i64>(0)? as u64,
                    flops: r.get(1)?,
                    val_loss: r.get(2)?,
                    val_bpb: r.get(3)?,
                    train_loss: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The whole run record of a finished run (with its task evaluations), if stored.
    pub fn run_record(&self, run_id: &str) -> Result<Option<RunRecord>, SweepError> {
        let json: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT record_json FROM runs WHERE run_id = ?1",
                [run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        match json.flatten() {
            None => Ok(None),
            Some(json) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| SweepError::Record {
                    path: self.path.clone(),
                    message: format!("the stored record of run {run_id}: {e}"),
                }),
        }
    }

    /// Moves the classification runs of a version-1 store into `runs`, in one transaction.
    fn migrate_v1(&mut self) -> Result<(), SweepError> {
        let has_old: bool = self
            .conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'classify_runs'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if !has_old {
            return Ok(());
        }
        let rows: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT cell_json, record_json FROM classify_runs ORDER BY rowid")
                .map_err(|e| self.err(e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.err(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(e))?
        };
        let mut migrated = Vec::with_capacity(rows.len());
        for (cell_json, record_json) in rows {
            let cell: StudyCell = self.parse_json(&cell_json, "a classification run's cell")?;
            let record: ClassifyRecord =
                self.parse_json(&record_json, "a classification run's record")?;
            let planned =
                PlannedClassify::of_record(cell, &record).map_err(|e| SweepError::Record {
                    path: self.path.clone(),
                    message: format!("classification run {}: {e}", record.run_id),
                })?;
            migrated.push((planned, record));
        }
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| store_err(&path, e))?;
        for (planned, record) in &migrated {
            insert_classify(&tx, &path, planned)?;
            update_classify(&tx, &path, record)?;
        }
        tx.execute_batch("DROP TABLE classify_runs")
            .map_err(|e| store_err(&path, e))?;
        tx.commit().map_err(|e| store_err(&path, e))
    }

    fn parse_json<T: serde::de::DeserializeOwned>(
        &self,
        json: &str,
        what: &str,
    ) -> Result<T, SweepError> {
        serde_json::from_str(json).map_err(|e| SweepError::Record {
            path: self.path.clone(),
            message: format!("{what}: {e}"),
        })
    }

    /// Adds the planned runs of a classification study, in the grid's order; runs already
    /// present keep their status and results.
    pub fn add_planned_classify(&mut self, runs: &[PlannedClassify]) -> Result<(), SweepError> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| store_err(&path, e))?;
        for r in runs {
            insert_classify(&tx, &path, r)?;
        }
        tx.commit().map_err(|e| store_err(&path, e))
    }

    /// Records a finished classification run, in one statement.
    pub fn record_classify(&mut self, record: &ClassifyRecord) -> Result<(), SweepError> {
        update_classify(&self.conn, &self.path, record)
    }

    /// Every recorded classification run with its cell, in the grid's order.
    pub fn classify_runs(&self) -> Result<Vec<(StudyCell, ClassifyRecord)>, SweepError> {
        let rows: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT cell_json, record_json FROM runs
                     WHERE kind = 'classify' AND record_json IS NOT NULL ORDER BY rowid",
                )
                .map_err(|e| self.err(e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.err(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(e))?
        };
        rows.iter()
            .map(|(cell, record)| {
                Ok((
                    self.parse_json(cell, "a classification run's cell")?,
                    self.parse_json(record, "a classification run's record")?,
                ))
            })
            .collect()
    }

    /// The stored record of a classification run, if any.
    pub fn classify_record(&self, run_id: &str) -> Result<Option<ClassifyRecord>, SweepError> {
        let json: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT record_json FROM runs WHERE run_id = ?1 AND kind = 'classify'",
                [run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        json.flatten()
            .map(|json| {
                serde_json::from_str(&json).map_err(|e| SweepError::Record {
                    path: self.path.clone(),
                    message: format!("the stored record of classification run {run_id}: {e}"),
                })
            })
            .transpose()
    }
}

fn store_err(path: &Path, source: rusqlite::Error) -> SweepError {
    SweepError::Store {
        path: path.to_path_buf(),
        source,
        hint: "the file may be damaged or held by another program",
    }
}

fn to_json<T: serde::Serialize>(
    path: &Path,
    what: &'static str,
    value: &T,
) -> Result<String, SweepError> {
    serde_json::to_string(value).map_err(|source| SweepError::Serialise {
        path: path.to_path_buf(),
        what,
        source,
    })
}

/// Adds a planned classification run (kept as it is if its id is there already).
fn insert_classify(conn: &Connection, path: &Path, r: &PlannedClassify) -> Result<(), SweepError> {
    let (budget_kind, budget_value) = r.budget();
    conn.execute(
        "INSERT OR IGNORE INTO runs (run_id, kind, cell_json, size, seed, n_layers, d_model,
            n_heads, params_total, params_non_embedding, n, param_convention, flops_per_token,
            planned_tokens, planned_flops, budget_kind, budget_value, spec_json)
         VALUES (?1, 'classify', ?2, ?3, ?4, 0, 0, 0, ?5, ?6, ?7, 'total', ?8, ?9, ?10, ?11,
            ?12, ?13)",
        params![
            r.run_id,
            to_json(path, "a classification run's cell", &r.cell)?,
            r.cell.model,
            r.cell.seed as i64,
            r.params.total as i64,
            r.params.non_embedding as i64,
            r.params.total as f64,
            r.flops_per_sample,
            r.samples as i64,
            r.flops,
            budget_kind,
            budget_value,
            to_json(path, "a classification run's spec", &r.spec)?,
        ],
    )
    .map(|_| ())
    .map_err(|e| store_err(path, e))
}

/// Stores a classification run's record on its planned row.
fn update_classify(
    conn: &Connection,
    path: &Path,
    record: &ClassifyRecord,
) -> Result<(), SweepError> {
    conn.execute(
        "UPDATE runs SET status = ?7, tokens_seen = ?2, train_flops = ?3,
            final_val_loss = ?4, wall_secs = ?5, message = ?8, record_json = ?6
         WHERE run_id = ?1 AND kind = 'classify'",
        params![
            record.run_id,
            record.result.samples_seen as i64,
            record.result.train_flops,
            record.result.validation.loss,
            record.wall_secs,
            to_json(path, "a classification record", record)?,
            RunState::from(&record.status).name(),
            match &record.status {
                RunStatus::Completed => None,
                RunStatus::Diverged { reason, .. } => Some(reason.as_str()),
            },
        ],
    )
    .map(|_| ())
    .map_err(|e| store_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_states_read_back_by_name_and_unknown_ones_are_named() {
        for s in RunState::ALL {
            assert_eq!(RunState::from_name(s.name()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap_or_default(),
                format!("\"{s}\"")
            );
        }
        assert!(RunState::Completed.is_recorded() && RunState::Diverged.is_recorded());
        assert!(!RunState::Failed.is_recorded() && !RunState::Planned.is_recorded());
        // A store whose status column holds something else says what and where.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .conn
            .execute(
                "INSERT INTO runs (run_id, size, seed, n_layers, d_model, n_heads, params_total,
                    params_non_embedding, n, param_convention, flops_per_token, planned_tokens,
                    planned_flops, budget_kind, budget_value, spec_json, status)
                 VALUES ('r', 's', 0, 1, 8, 1, 1, 1, 1.0, 'total', 1.0, 1, 1.0, 'tokens', 1.0,
                    '{}', 'finished')",
                [],
            )
            .unwrap();
        let err = store.runs().unwrap_err().to_string();
        assert!(err.contains("unknown run status `finished`"), "{err}");
    }
}
