//! Renders a study's records and fits: one self-contained HTML page with SVG plots (drawn
//! with plotters), and CSV exports of runs and curves.
//!
//! This crate computes no new statistics: the program hands it the stored runs and the fits
//! the analysis crate produced ([`StudyAnalysis`]), and it draws and tabulates them.

mod abilities;
mod classify;
mod compress;
mod csv_export;
mod html;
mod page;
mod plot;
mod transfer;

pub use classify::{ClassifyRun, ClassifyStudyReport, render_classify_report};
pub use compress::{CompressionStudyReport, render_compression_report};
pub use csv_export::{
    CSV_SCHEMA_VERSION, write_curves_csv, write_emergence_csv, write_emergence_examples_csv,
    write_runs_csv, write_task_curves_csv,
};
pub use html::{ReportInput, render_html};
pub use scalelab_analysis::abilities::{AbilityAnalysis, Delay, TaskPoint, TaskRun};
pub use scalelab_analysis::study::StudyAnalysis;
pub use transfer::{PretrainRow, TransferStudyReport, render_transfer_report};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A plot could not be drawn.
    #[error("drawing the plot '{title}': {message}")]
    Plot {
        /// Which plot.
        title: String,
        /// What went wrong.
        message: String,
    },
    /// A CSV file could not be written.
    #[error("writing {path}: {message}\nhint: check that the directory exists and is writable")]
    Csv {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}
