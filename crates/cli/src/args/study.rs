//! The arguments of `scalelab study` and its subcommands (plan, run, run-one, submit,
//! status, report, export, sync, repair).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `scalelab study ...`.
#[derive(Debug, Subcommand)]
pub enum StudyCommand {
    /// Print a study's runs with their parameters, tokens, FLOPs and estimated time.
    Plan(StudyFileArgs),
    /// Train every run of a study not yet done (resumable), then write its report.
    Run(StudyRunArgs),
    /// Show which runs of a study are done.
    Status(StudyDirArgs),
    /// Write the study's HTML report (report.html in the study directory).
    Report(StudyDirArgs),
    /// Export the study's runs and curves as CSV (and, with --tensorboard DIR, every run's
    /// TensorBoard event file in DIR/RUN_ID).
    Export(StudyExportArgs),
    /// Rebuild a damaged or lost study store from the study file and the runs' records in
    /// the study directory (the old store is kept aside); trains nothing.
    Repair(StudyRepairArgs),
    /// Train one run of a study by its index in DIR/plan.json (an array task of a cluster
    /// scheduler): claimed like every run, recorded as a file.
    RunOne(StudyRunOneArgs),
    /// Log every recorded run of a study to MLflow (those logged before are skipped), e.g.
    /// after the server was down.
    Sync(StudySyncArgs),
    /// Submit a study's runs still to do as a SLURM job array (or print a Kubernetes Indexed
    /// Job), one array task per run.
    Submit(StudySubmitArgs),
}

/// `scalelab study run-one`.
#[derive(Debug, Args)]
pub struct StudyRunOneArgs {
    /// The study's TOML file.
    pub file: PathBuf,
    /// Study directory (default: studies/NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Where the run trains: cpu, or gpu (a build with `--features gpu`).
    #[arg(long)]
    pub device: Option<scalelab_spec::TrainDevice>,
    /// The run's index in DIR/plan.json (default: from SLURM_ARRAY_TASK_ID,
    /// JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX).
    #[arg(long)]
    pub index: Option<usize>,
    /// Added to the index (a chunk of an array larger than the cluster's MaxArraySize).
    #[arg(long, default_value_t = 0)]
    pub offset: usize,
    /// Tensor-backend threads of the run (default: SLURM_CPUS_PER_TASK, else 1).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seconds this task's claim may go without a heartbeat before another worker takes
    /// its run over (default 300).
    #[arg(long, value_name = "SECS")]
    pub claim_timeout: Option<u64>,
    /// On SIGUSR1 (SLURM's `--signal=B:USR1@T`), stop the run at a checkpoint and requeue
    /// this array task with `scontrol requeue`, so that it resumes.
    #[arg(long)]
    pub requeue: bool,
}

/// `scalelab study submit`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("engine").required(true).args(["slurm", "k8s"])))]
pub struct StudySubmitArgs {
    /// The study's TOML file.
    pub file: PathBuf,
    /// Study directory (default: studies/NAME); on a filesystem every node shares.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Submit a SLURM job array with sbatch.
    #[arg(long)]
    pub slurm: bool,
    /// Print a Kubernetes Indexed Job manifest (with --dry-run).
    #[arg(long)]
    pub k8s: bool,
    /// SLURM partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// SLURM time limit of each task (e.g. 2:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs of each task, which are its run's threads.
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: usize,
    /// GPUs of each task.
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    /// Array tasks running at once (SLURM's %K; Kubernetes' parallelism).
    #[arg(long)]
    pub array_parallelism: Option<usize>,
    /// Requeue a task warned of its end (time limit, preemption) by USR1 two minutes
    /// before: its run checkpoints and resumes in the requeued task.
    #[arg(long)]
    pub requeue: bool,
    /// Seconds a task's claim may go without a heartbeat before another worker takes its
    /// run over (default 300).
    #[arg(long, value_name = "SECS")]
    pub claim_timeout: Option<u64>,
    /// Write (SLURM) or print (Kubernetes) what would be submitted, submitting nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Container image with scalelab on its PATH (Kubernetes).
    #[arg(long, default_value = "scalelab:latest")]
    pub image: String,
    /// PersistentVolumeClaim holding the working directory (Kubernetes).
    #[arg(long, default_value = "scalelab-work")]
    pub volume_claim: String,
}

/// `scalelab study repair`.
#[derive(Debug, Args)]
pub struct StudyRepairArgs {
    /// The study directory (it holds study.toml and runs/).
    pub dir: PathBuf,
}

/// A study file.
#[derive(Debug, Args)]
pub struct StudyFileArgs {
    /// The study's TOML file (see examples/quickstart.toml).
    pub file: PathBuf,
    /// Study directory (default: studies/NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `scalelab study run`.
#[derive(Debug, Args)]
pub struct StudyRunArgs {
    /// The study's TOML file (see examples/quickstart.toml).
    pub file: PathBuf,
    /// Study directory (default: studies/NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Runs trained at once (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Tensor-backend threads of each run (default 1, as independent runs scale better; a
    /// study of fewer runs than cores shares the cores out among them).
    #[arg(long)]
    pub threads_per_run: Option<usize>,
    /// Do not write the report at the end.
    #[arg(long)]
    pub no_report: bool,
    /// Where the runs train: cpu, or gpu (a build with `--features gpu`; one run at a time
    /// on the one GPU).
    #[arg(long)]
    pub device: Option<scalelab_spec::TrainDevice>,
    /// Seconds this worker's claims may go without a heartbeat before another worker takes
    /// its runs over (default 300; it beats every quarter of that; a worker on the same
    /// machine whose processes are gone is taken over at once).
    #[arg(long, value_name = "SECS")]
    pub claim_timeout: Option<u64>,
    /// When the study ends, write every run's TensorBoard event file into DIR/RUN_ID.
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
    #[command(flatten)]
    pub mlflow: MlflowFlags,
    /// Import the runs' records into the store, and train nothing (`study repair`).
    #[arg(skip)]
    pub import_only: bool,
}

/// A study directory (or the study file, whose directory is studies/NAME).
#[derive(Debug, Args)]
pub struct StudyDirArgs {
    /// The study directory, or its TOML file.
    pub study: PathBuf,
    /// Output path (report: an HTML file; export: a directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print JSON (status).
    #[arg(long)]
    pub json: bool,
}

/// Where runs are logged to MLflow.
#[derive(Debug, Args, Clone, Default)]
pub struct MlflowFlags {
    /// Log to the MLflow tracking server at URI (default: $MLFLOW_TRACKING_URI when set): the
    /// run's parameters, metrics and record, when it ends (a study: each run, when it ends).
    /// A server that is down never fails the run: what was not sent is kept for
    /// `scalelab study sync`.
    #[arg(long, value_name = "URI")]
    pub mlflow: Option<String>,
    /// The MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else the study's name, else
    /// "scalelab").
    #[arg(long, value_name = "NAME")]
    pub mlflow_experiment: Option<String>,
}

/// `scalelab study sync`.
#[derive(Debug, Args)]
pub struct StudySyncArgs {
    /// The study directory, or its TOML file.
    pub study: PathBuf,
    #[command(flatten)]
    pub mlflow: MlflowFlags,
}

/// `scalelab study export`.
#[derive(Debug, Args)]
pub struct StudyExportArgs {
    /// The study directory, or its TOML file.
    pub study: PathBuf,
    /// The directory for the CSV files (default: the study directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write every recorded run's TensorBoard event file into DIR/RUN_ID.
    #[arg(long, value_name = "DIR")]
    pub tensorboard: Option<PathBuf>,
}
