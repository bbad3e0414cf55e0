//! Cost accounting of every model family, from its shape alone: exact trainable parameters in
//! both conventions and training FLOPs. It lives here, with the shapes, and not beside the
//! Burn modules, so that planning a study, checking a budget and reporting need no tensor
//! library; each family's file in `scalelab-models` builds the modules these count, and its
//! tests check the counts against the built model's parameters.

pub mod cnn;
pub mod encoder;
pub mod gpt;
pub mod mlp;
pub mod resnet;
pub mod rnn;

use crate::{
    Budget, ClassifierConfig, ClassifyConfig, GptConfig, ParamCounts, RunConfig, SampleBudget,
};

pub use gpt::LM_FLOPS_CONVENTION;

impl GptConfig {
    /// A short label of the shape: `GPT 4L d128 4h`, `LSTM 2L d64`.
    pub fn label(&self) -> String {
        match self.family.rnn_cell() {
            None => format!("GPT {}L d{} {}h", self.n_layers, self.d_model, self.n_heads),
            Some(cell) => format!("{} {}L d{}", cell.name(), self.n_layers, self.d_model),
        }
    }

    /// The whole shape in words.
    pub fn describe(&self) -> String {
        match self.family.rnn_cell() {
            None => format!(
                "{} layers, d_model {}, {} heads of {}, d_ff {}, ctx {}, vocab {}{}",
                self.n_layers,
                self.d_model,
                self.n_heads,
                self.head_dim(),
                self.d_ff,
                self.ctx_len,
                self.vocab_size,
                if self.tie_embeddings {
                    ", tied head"
                } else {
                    ""
                }
            ),
            Some(cell) => format!(
                "{} of {} layers × {} units (embedding {}), ctx {}, vocab {}, untied head",
                cell.name(),
                self.n_layers,
                self.d_model,
                self.d_model,
                self.ctx_len,
                self.vocab_size
            ),
        }
    }

    /// How [`flops_per_token`](Self::flops_per_token) counts, in a formula.
    pub fn flops_formula(&self) -> &'static str {
        match self.family.rnn_cell() {
            None => "6·N_matmul + 12·L·T·d",
            Some(_) => "6·(gate and head matrices)",
        }
    }

    /// Exact parameter counts of this language model, whatever its family.
    pub fn param_counts(&self) -> ParamCounts {
        match self.family.rnn_cell() {
            None => gpt::gpt_param_counts(self),
            Some(cell) => rnn::rnn_lm_param_counts(cell, self),
        }
    }

    /// Training FLOPs per token under [`LM_FLOPS_CONVENTION`] (the recurrent models have no
    /// attention term).
    pub fn flops_per_token(&self) -> f64 {
        match self.family.rnn_cell() {
            None => gpt::gpt_flops_per_token(self),
            Some(cell) => rnn::rnn_lm_flops_per_token(cell, self),
        }
    }
}

impl RunConfig {
    /// `(optimiser steps, tokens per step)` of this run: its budget (tokens, or FLOPs at
    /// [`GptConfig::flops_per_token`]) rounded up to whole steps, at least one.
    pub fn planned_steps(&self) -> (u64, u64) {
        let t = &self.train;
        let tokens_per_step = (t.batch_size * t.grad_accum * self.model.ctx_len) as u64;
        let budget_tokens = match t.budget {
            Budget::Tokens(tokens) => tokens,
            Budget::Flops(flops) => (flops / self.model.flops_per_token()) as u64,
        };
        (
            budget_tokens.div_ceil(tokens_per_step).max(1),
            tokens_per_step,
        )
    }
}

impl ClassifyConfig {
    /// `(optimiser steps, samples per step)` of this run: its budget (samples, or FLOPs at
    /// [`ClassifierConfig::flops_per_sample`]) rounded up to whole steps, at least one.
    pub fn planned_steps(&self) -> (u64, u64) {
        let batch = self.train.batch_size as u64;
        let samples = match self.train.budget {
            SampleBudget::Samples(s) => s,
            SampleBudget::Flops(f) => (f / self.model.flops_per_sample()) as u64,
        };
        (samples.div_ceil(batch).max(1), batch)
    }
}

impl ClassifierConfig {
    /// Exact parameter counts of this classifier.
    pub fn param_counts(&self) -> ParamCounts {
        match self {
            ClassifierConfig::Mlp {
                inputs,
                hidden,
                classes,
                ..
            } => mlp::mlp_param_counts(*inputs, hidden, *classes),
            ClassifierConfig::Cnn {
                input,
                stages,
                fc,
                classes,
                ..
            } => cnn::cnn_param_counts(*input, stages, *fc, *classes),
            ClassifierConfig::Resnet {
                input,
                stages,
                classes,
                ..
            } => resnet::resnet_param_counts(*input, stages, *classes),
            ClassifierConfig::Rnn {
                cell,
                vocab,
                embed,
                hidden,
                layers,
                classes,
                ..
            } => rnn::rnn_param_counts(*cell, *vocab, *embed, *hidden, *layers, *classes),
            ClassifierConfig::Encoder {
                vocab,
                ctx,
                d_model,
                n_layers,
                classes,
                ..
            } => encoder::encoder_param_counts(*vocab, *ctx, *d_model, *n_layers, *classes),
        }
    }

    /// Training FLOPs per sample ([`FlopsConvention::SixForwardMacsPerSample`](crate::FlopsConvention)).
    pub fn flops_per_sample(&self) -> f64 {
        match self {
            ClassifierConfig::Mlp {
                inputs,
                hidden,
                classes,
                ..
            } => mlp::mlp_flops_per_sample(*inputs, hidden, *classes),
            ClassifierConfig::Cnn {
                input,
                stages,
                fc,
                classes,
                ..
            } => cnn::cnn_flops_per_sample(*input, stages, *fc, *classes),
            ClassifierConfig::Resnet {
                input,
                stages,
                classes,
                ..
            } => resnet::resnet_flops_per_sample(*input, stages, *classes),
            ClassifierConfig::Rnn {
                cell,
                ctx,
                embed,
                hidden,
                layers,
                classes,
                per_token,
                ..
            } => rnn::rnn_flops_per_sample(
                *cell, *embed, *hidden, *layers, *classes, *ctx, *per_token,
            ),
            ClassifierConfig::Encoder {
                ctx,
                d_model,
                n_layers,
                classes,
                per_token,
                ..
            } => encoder::encoder_flops_per_sample(*ctx, *d_model, *n_layers, *classes, *per_token),
        }
    }
}
