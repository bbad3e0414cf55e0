//! The progress bar of `scalelab train` and `scalelab classify` on stderr: tokens (samples),
//! loss, tokens/s and ETA, with one line per language-model evaluation. Without a terminal (or with --quiet) only the evaluation lines show.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use scalelab_spec::CurvePoint;
use scalelab_train::Progress;

use crate::human;

/// Progress on stderr.
pub struct Bar {
    bar: ProgressBar,
    quiet: bool,
}

impl Bar {
    /// A bar counting `unit` (tokens, samples), hidden when `quiet`.
    pub fn new(quiet: bool, unit: &str) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(0),
            if quiet {
                ProgressDrawTarget::hidden()
            } else {
                ProgressDrawTarget::stderr()
            },
        );
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{{bar:30}} {{human_pos}}/{{human_len}} {unit} | {{msg}} | {{per_sec}} | ETA {{eta}}"
        )) {
            bar.set_style(style);
        }
        Self { bar, quiet }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&mut self, tokens_seen: u64, total_tokens: u64) {
        self.bar.set_length(total_tokens);
        self.bar.set_position(tokens_seen);
        self.bar.reset_eta();
    }

    fn step(&mut self, tokens_seen: u64, loss: f64, lr: f64) {
        self.bar.set_position(tokens_seen);
        self.bar.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
    }

    fn eval(&mut self, p: &CurvePoint) {
        let line = format!(
            "tokens {:>8} | train {} | val {:.4} nats/token, {:.4} bits/byte | {:.0} s",
            human(p.tokens as f64),
            p.train_loss
                .map_or("   -  ".to_string(), |l| format!("{l:.4}")),
            p.val_loss,
            p.val_bpb,
            p.wall_secs
        );
        if self.bar.is_hidden() {
            if !self.quiet {
                eprintln!("{line}");
            }
        } else {
            self.bar.println(line);
        }
    }
}
