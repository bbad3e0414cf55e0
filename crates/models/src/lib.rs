//! Model families of scalelab, one file each, each readable top to bottom and each reporting
//! its exact parameter counts and training FLOPs from its shape.
//!
//! Models only build and run: the training loop, data and records live in other crates.

pub mod cnn;
pub mod gpt;
pub mod init;
pub mod mlp;

pub use cnn::{Cnn, cnn_flops_per_sample, cnn_param_counts};
pub use gpt::{FLOPS_CONVENTION, Gpt, flops_per_token, param_counts};
pub use init::{FormulaInit, InitKind, SeededInit, WeightInit};
pub use mlp::{Mlp, mlp_flops_per_sample, mlp_param_counts};

#[cfg(test)]
mod test_util;
