//! `scalelab study`: plan, run, status, report and export, over the sweep, analysis and
//! report crates. Runs train in child processes of this same program (`scalelab train`).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use scalelab_analysis::extrapolation::extrapolation_check;
use scalelab_analysis::frontier::{CurvePoint, RunCurve, approach1};
use scalelab_analysis::isoflop::{IsoFlopGroup, approach2};
use scalelab_analysis::optimal::Chinchilla;
use scalelab_analysis::{FitOptions, LawKind, Point, fit_chinchilla, fit_power};
use scalelab_report::{
    ReportInput, StudyAnalysis, render_html, write_curves_csv, write_emergence_csv, write_runs_csv,
    write_task_curves_csv,
};
use scalelab_spec::StudySpec;
use scalelab_sweep::{
    Launcher, PlannedRun, RunEnd, Store, StoredCurvePoint, StoredRun, StudyPlan, StudyProgress,
    plan_study, run_study, study_vocab,
};

use crate::args::{StudyCommand, StudyDirArgs, StudyFileArgs, StudyRunArgs};
use crate::{human, read_toml};

/// A rough rate for estimates before any run of the study has finished: FLOP/s of one
/// single-threaded run of a small GPT (the quickstart's runs averaged 37 GFLOP/s each on a
/// 2-core AVX-512 Xeon, BENCHMARKS.md; taken lower for CPUs without AVX-512).
const DEFAULT_FLOPS_PER_SEC: f64 = 2e10;

pub fn run(command: StudyCommand) -> Result<ExitCode> {
    match command {
        StudyCommand::Plan(args) => plan(args),
        StudyCommand::Run(args) => run_cmd(args),
        StudyCommand::Status(args) => status(args),
        StudyCommand::Report(args) => report(args).map(|_| ExitCode::SUCCESS),
        StudyCommand::Export(args) => export(args),
    }
}

/// The study file, read and checked, and its directory.
fn load(file: &Path, dir: Option<&Path>) -> Result<(StudySpec, String, PathBuf)> {
    let spec: StudySpec = read_toml(file)?;
    spec.check()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read study file {}", file.display()))?;
    let dir = dir.map_or_else(
        || PathBuf::from("studies").join(&spec.name),
        Path::to_path_buf,
    );
    Ok((spec, text, dir))
}

fn make_plan(spec: &StudySpec, dir: &Path, file: &Path) -> Result<StudyPlan> {
    let (vocab, data) = study_vocab(&spec.data, dir, file)?;
    Ok(plan_study(spec, &data, vocab, file)?)
}

/// FLOP/s per run measured by this study's finished runs, if any.
fn measured_rate(dir: &Path) -> Option<f64> {
    if !dir.join(scalelab_sweep::STORE_FILE).is_file() {
        return None;
    }
    let store = Store::open(dir).ok()?;
    let runs = store.runs().ok()?;
    let (flops, secs) = runs
        .iter()
        .filter(|r| r.status == "completed" && r.wall_secs > 0.0)
        .fold((0.0, 0.0), |(f, s), r| (f + r.train_flops, s + r.wall_secs));
    (secs > 0.0).then_some(flops / secs)
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn plan(args: StudyFileArgs) -> Result<ExitCode> {
    let (spec, _, dir) = load(&args.file, args.dir.as_deref())?;
    let plan = make_plan(&spec, &dir, &args.file)?;
    let (rate, source) = match measured_rate(&dir) {
        Some(r) => (r, "measured by this study's finished runs"),
        None => (
            DEFAULT_FLOPS_PER_SEC,
            "default estimate; refined once runs finish",
        ),
    };
    let jobs = default_jobs();
    let serial: f64 = plan.runs.iter().map(|r| r.flops / rate).sum();
    if args.json {
        let runs: Vec<serde_json::Value> = plan
            .runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "run_id": r.run_id, "size": r.size, "seed": r.seed,
                    "n_layers": r.config.model.n_layers, "d_model": r.config.model.d_model,
                    "n_heads": r.config.model.n_heads, "params": r.params, "N": r.n,
                    "tokens": r.tokens, "flops": r.flops, "budget": r.budget,
                    "estimated_secs": r.flops / rate,
                })
            })
            .collect();
        let value = serde_json::json!({
            "study": spec.name, "dir": dir, "param_convention": spec.param_convention.name(),
            "runs": runs, "total_flops": plan.total_flops(),
            "flops_per_sec_per_run": rate, "rate_source": source, "jobs": jobs,
            "estimated_wall_secs": serial / jobs as f64,
            "duplicates_skipped": plan.duplicates,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "study {} ({} runs) -> {}",
        spec.name,
        plan.runs.len(),
        dir.display()
    );
    println!(
        "{:<16} {:<12} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "run", "size", "seed", "shape", "N total", "N non-emb", "tokens", "FLOPs", "est. s"
    );
    for r in &plan.runs {
        println!(
            "{:<16} {:<12} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10.3e} {:>8.0}",
            r.run_id,
            r.size,
            r.seed,
            format!("{}x{}", r.config.model.n_layers, r.config.model.d_model),
            human(r.params.total as f64),
            human(r.params.non_embedding as f64),
            human(r.tokens as f64),
            r.flops,
            r.flops / rate
        );
    }
    println!(
        "total {:.3e} FLOPs; about {:.0} s on {jobs} parallel runs at {} FLOP/s each ({source})",
        plan.total_flops(),
        serial / jobs as f64,
        human(rate)
    );
    if plan.duplicates > 0 {
        println!(
            "{} (size, budget, seed) combinations resolved to runs already listed and were merged",
            plan.duplicates
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts `scalelab train` on a run's spec, in its directory.
struct SelfLauncher {
    exe: PathBuf,
    threads: usize,
}

impl Launcher for SelfLauncher {
    fn command(&self, _run: &PlannedRun, run_dir: &Path) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("train")
            .arg("--config")
            .arg(run_dir.join("spec.toml"))
            .arg("--run-dir")
            .arg(run_dir)
            .arg("--threads")
            .arg(self.threads.to_string())
            .arg("--quiet")
            .arg("--exit-with-parent");
        c
    }
}

/// Progress lines on stderr.
struct Lines {
    total: usize,
    done: usize,
    flops_total: f64,
    flops_done: f64,
    started: std::time::Instant,
}

impl StudyProgress for Lines {
    fn begin(&mut self, total: usize, done: usize, flops_total: f64, flops_done: f64) {
        self.total = total;
        self.done = done;
        self.flops_total = flops_total;
        self.flops_done = flops_done;
        eprintln!(
            "study: {total} runs, {done} already done, {:.3e} of {:.3e} FLOPs left",
            flops_total - flops_done,
            flops_total
        );
    }

    fn started(&mut self, run: &PlannedRun) {
        eprintln!(
            "  {:<10} {} {:<12} N={:<8} {} tokens",
            "start",
            run.run_id,
            run.size,
            human(run.n),
            human(run.tokens as f64)
        );
    }

    fn finished(&mut self, run: &PlannedRun, end: &RunEnd) {
        self.done += 1;
        self.flops_done += run.flops;
        let pct = 100.0 * self.flops_done / self.flops_total.max(1.0);
        let elapsed = self.started.elapsed().as_secs_f64();
        match end {
            RunEnd::Recorded {
                status,
                final_val_loss,
                wall_secs,
            } => eprintln!(
                "  {status:<10} {} {:<12} loss {} in {wall_secs:.0} s   [{}/{} runs, {pct:.0}% of FLOPs, {elapsed:.0} s]",
                run.run_id,
                run.size,
                final_val_loss.map_or("-".into(), |l| format!("{l:.4}")),
                self.done,
                self.total
            ),
            RunEnd::Failed { message } => eprintln!(
                "  {:<10} {} {}: {message}   [{}/{} runs]",
                "failed", run.run_id, run.size, self.done, self.total
            ),
        }
    }
}

fn run_cmd(args: StudyRunArgs) -> Result<ExitCode> {
    let (spec, text, dir) = load(&args.file, args.dir.as_deref())?;
    if args.threads_per_run == Some(0) {
        bail!("invalid value for `--threads-per-run`: 0\nhint: use at least 1");
    }
    let plan = make_plan(&spec, &dir, &args.file)?;
    let threads_per_run = args
        .threads_per_run
        .unwrap_or_else(|| (default_jobs() / plan.runs.len().max(1)).max(1));
    let mut store = Store::open(&dir)?;
    if let Some(old) = store.meta("name")?
        && old != spec.name
    {
        bail!(
            "{} holds study `{old}`, not `{}`\nhint: give this study its own directory with --dir",
            dir.display(),
            spec.name
        );
    }
    store.set_meta("name", &spec.name)?;
    store.set_meta("spec_toml", &text)?;
    crate::write_text(&dir.join("study.toml"), &text)?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| (default_jobs() / threads_per_run).max(1));
    let launcher = SelfLauncher {
        exe: std::env::current_exe().context("locating the scalelab program")?,
        threads: threads_per_run,
    };
    let mut progress = Lines {
        total: 0,
        done: 0,
        flops_total: 0.0,
        flops_done: 0.0,
        started: std::time::Instant::now(),
    };
    eprintln!(
        "study {} in {}: {jobs} runs at a time, {} thread(s) each",
        spec.name,
        dir.display(),
        threads_per_run
    );
    let summary = run_study(&plan, &mut store, &dir, &launcher, jobs, &mut progress)?;
    let achieved: f64 = store
        .runs()?
        .iter()
        .filter(|r| r.status == "completed")
        .map(|r| r.train_flops)
        .sum::<f64>();
    eprintln!(
        "study {}: {} completed now, {} diverged, {} failed, {} were already done; {:.0} s wall",
        spec.name,
        summary.completed,
        summary.diverged,
        summary.failed,
        summary.already_done,
        summary.wall_secs
    );
    if summary.wall_secs > 0.0 && summary.completed > 0 {
        eprintln!(
            "achieved {} FLOP/s over the study's recorded runs (this invocation: {:.0} s)",
            human(achieved / summary.wall_secs.max(1e-9)),
            summary.wall_secs
        );
    }
    if !args.no_report {
        let path = report(StudyDirArgs {
            study: dir.clone(),
            out: None,
            json: false,
        })?;
        println!("{}", path.display());
    }
    Ok(if summary.failed > 0 {
        eprintln!("some runs failed; run the same command again to retry them");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The study directory of `path` (a directory, or a study file whose directory is
/// studies/NAME).
pub(crate) fn study_dir(path: &Path) -> Result<PathBuf> {
    let dir = if path.is_file() {
        let spec: StudySpec = read_toml(path)?;
        PathBuf::from("studies").join(spec.name)
    } else {
        path.to_path_buf()
    };
    if !dir.join(scalelab_sweep::STORE_FILE).is_file() {
        bail!(
            "{} is not a study directory (no {} in it)\nhint: run `scalelab study run FILE` first, or give the directory the study was run in",
            dir.display(),
            scalelab_sweep::STORE_FILE
        );
    }
    Ok(dir)
}

fn status(args: StudyDirArgs) -> Result<ExitCode> {
    let dir = study_dir(&args.study)?;
    let store = Store::open(&dir)?;
    let runs = store.runs()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let count = |s: &str| runs.iter().filter(|r| r.status == s).count();
    println!(
        "{}: {} runs: {} completed, {} diverged, {} failed, {} to do",
        dir.display(),
        runs.len(),
        count("completed"),
        count("diverged"),
        count("failed"),
        count("planned")
    );
    for r in &runs {
        println!(
            "{:<16} {:<12} seed {:<3} N={:<9} {:>9} tokens  {:<9} {}",
            r.run_id,
            r.size,
            r.seed,
            human(r.n),
            human(r.planned_tokens as f64),
            r.status,
            r.final_val_loss
                .map_or(String::new(), |l| format!("loss {l:.4}"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stored(dir: &Path) -> Result<(Store, Vec<StoredRun>, Vec<Vec<StoredCurvePoint>>)> {
    let store = Store::open(dir)?;
    let runs = store.runs()?;
    let curves = runs
        .iter()
        .map(|r| store.curve(&r.run_id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((store, runs, curves))
}

fn report(args: StudyDirArgs) -> Result<PathBuf> {
    let dir = study_dir(&args.study)?;
    let (store, runs, curves) = stored(&dir)?;
    let text = store.meta("spec_toml")?.unwrap_or_default();
    let spec: Option<StudySpec> = toml::from_str(&text).ok();
    let settings = spec
        .as_ref()
        .map(|s| s.analysis.clone())
        .unwrap_or_default();
    let analysis = analyse(
        &runs,
        &curves,
        settings.bootstrap,
        settings.hold_out,
        settings.seed,
    );
    let abilities = crate::abilities::analyse_abilities(&store, &runs, settings.seed)?;
    let input = ReportInput {
        name: store.meta("name")?.unwrap_or_default(),
        description: spec
            .as_ref()
            .map(|s| s.description.clone())
            .unwrap_or_default(),
        spec_toml: text,
        command: format!("scalelab study report {}", dir.display()),
        runs,
        curves,
        analysis,
        flops_convention:
            "6·N_matmul + 12·L·T·d per token: matrix weights and attention, forward and backward"
                .into(),
        abilities,
    };
    let html = render_html(&input)?;
    let path = args.out.unwrap_or_else(|| dir.join("report.html"));
    crate::write_text(&path, &html)?;
    eprintln!("report written to {}", path.display());
    Ok(path)
}

fn export(args: StudyDirArgs) -> Result<ExitCode> {
    let dir = study_dir(&args.study)?;
    let (store, runs, curves) = stored(&dir)?;
    let out = args.out.unwrap_or_else(|| dir.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    write_runs_csv(&out.join("runs.csv"), &runs)?;
    write_curves_csv(&out.join("curves.csv"), &runs, &curves)?;
    println!("{}", out.join("runs.csv").display());
    println!("{}", out.join("curves.csv").display());
    if let Some(a) = crate::abilities::analyse_abilities(&store, &runs, 0)? {
        let task = a.task.split(' ').next().unwrap_or("task");
        write_task_curves_csv(&out.join("task_curves.csv"), task, &a.runs)?;
        write_emergence_csv(&out.join("emergence_n.csv"), task, &a.runs)?;
        println!("{}", out.join("task_curves.csv").display());
        println!("{}", out.join("emergence_n.csv").display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Every fit the study's design supports, with notes for those it does not.
pub fn analyse(
    runs: &[StoredRun],
    curves: &[Vec<StoredCurvePoint>],
    bootstrap: usize,
    hold_out: usize,
    seed: u64,
) -> StudyAnalysis {
    let opts = FitOptions {
        bootstrap,
        seed,
        ..FitOptions::default()
    };
    let mut a = StudyAnalysis {
        level: opts.level,
        ..StudyAnalysis::default()
    };
    let done: Vec<(usize, &StoredRun)> = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == "completed" && r.final_val_loss.is_some())
        .collect();
    if done.is_empty() {
        a.notes
            .push("no run has completed yet; run the study first".into());
        return a;
    }
    // Loss against N: each size at its largest budget.
    let mut sizes: Vec<&str> = done.iter().map(|(_, r)| r.size.as_str()).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for size in &sizes {
        let of_size: Vec<&StoredRun> = done
            .iter()
            .map(|(_, r)| *r)
            .filter(|r| r.size == *size)
            .collect();
        let top = of_size.iter().map(|r| r.planned_flops).fold(0.0, f64::max);
        for r in of_size.iter().filter(|r| r.planned_flops == top) {
            a.loss_vs_n_points
                .push((r.n, r.final_val_loss.unwrap_or(f64::NAN)));
        }
    }
    a.loss_vs_n_points.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (ns, ls): (Vec<f64>, Vec<f64>) = a.loss_vs_n_points.iter().copied().unzip();
    match fit_power("N", &ns, &ls, &opts) {
        Ok(fit) => a.loss_vs_n = Some(fit),
        Err(e) => a.notes.push(format!("no power law in N: {e}")),
    }
    // The frontier and approach 1.
    let run_curves: Vec<RunCurve> = done
        .iter()
        .map(|(i, r)| RunCurve {
            n: r.n,
            points: curves[*i]
                .iter()
                .map(|p| CurvePoint {
                    flops: p.flops,
                    tokens: p.tokens as f64,
                    loss: p.val_loss,
                })
                .collect(),
        })
        .collect();
    match approach1(&run_curves, 20, &opts) {
        Ok(f) => {
            if f.loss_fit.is_none() {
                a.notes
                    .push("too few frontier points for a power law in C (need 4)".into());
            }
            a.frontier = Some(f);
        }
        Err(e) => a.notes.push(format!("no compute frontier: {e}")),
    }
    // The parametric law, when D varies.
    let points: Vec<Point> = done
        .iter()
        .map(|(_, r)| Point {
            n: r.n,
            d: r.tokens_seen as f64,
            loss: r.final_val_loss.unwrap_or(f64::NAN),
        })
        .collect();
    let mut ds: Vec<f64> = points.iter().map(|p| p.d).collect();
    ds.sort_by(f64::total_cmp);
    ds.dedup();
    let chinchilla = if ds.len() >= 2 {
        match fit_chinchilla(&points, &opts) {
            Ok(fit) => Some(fit),
            Err(e) => {
                a.notes.push(format!("no Chinchilla fit: {e}"));
                None
            }
        }
    } else {
        a.notes.push("every run trained on the same number of tokens, so L(N, D) is not fitted; the loss-against-N law above is at that fixed D".into());
        None
    };
    if let Some(fit) = &chinchilla
        && let Ok(law) = Chinchilla::from_fit(fit)
    {
        let top = done.iter().map(|(_, r)| r.train_flops).fold(0.0, f64::max);
        a.allocations = [1.0, 10.0, 100.0]
            .iter()
            .filter_map(|m| law.optimal(top * m).ok())
            .collect();
    }
    a.chinchilla = chinchilla;
    // IsoFLOP profiles.
    let mut budgets: Vec<f64> = done
        .iter()
        .filter(|(_, r)| r.budget_kind == "flops")
        .map(|(_, r)| r.budget_value)
        .collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup();
    if !budgets.is_empty() {
        let groups: Vec<IsoFlopGroup> = budgets
            .iter()
            .map(|&c| IsoFlopGroup {
                flops: c,
                points: done
                    .iter()
                    .filter(|(_, r)| r.budget_kind == "flops" && r.budget_value == c)
                    .map(|(_, r)| (r.n, r.final_val_loss.unwrap_or(f64::NAN)))
                    .collect(),
            })
            .collect();
        match approach2(&groups, bootstrap, opts.level, seed) {
            Ok(iso) => a.isoflop = Some(iso),
            Err(e) => a.notes.push(format!("no IsoFLOP analysis: {e}")),
        }
    }
    // Extrapolation: refit without the largest sizes.
    if hold_out > 0 {
        let check_opts = FitOptions {
            bootstrap: 0,
            ..opts
        };
        let result = if a.chinchilla.is_some() {
            extrapolation_check(LawKind::Chinchilla, &points, hold_out, &check_opts)
        } else {
            let pts: Vec<Point> = a
                .loss_vs_n_points
                .iter()
                .map(|&(n, loss)| Point { n, d: 1.0, loss })
                .collect();
            extrapolation_check(LawKind::Power, &pts, hold_out, &check_opts)
        };
        match result {
            Ok(x) => a.extrapolation = Some(x),
            Err(e) => a.notes.push(format!("no extrapolation check: {e}")),
        }
    }
    a
}

/// The Chinchilla fit of a study's recorded runs (for `scalelab plan --study`).
pub(crate) fn chinchilla_of(dir: &Path) -> Result<scalelab_analysis::LawFit> {
    let (_, runs, curves) = stored(dir)?;
    let analysis = analyse(&runs, &curves, 0, 0, 0);
    analysis.chinchilla.ok_or_else(|| {
        anyhow::anyhow!(
            "the study in {} has no Chinchilla fit ({})\nhint: a study needs runs at several sizes and several token budgets; or give --E, --A, --B, --alpha, --beta",
            dir.display(),
            analysis.notes.join("; ")
        )
    })
}
