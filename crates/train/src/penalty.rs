//! Weight penalties, which every kind of run may add to its loss.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// `loss + l1·Σ|w| + l2/2·Σw²` over every weight matrix and kernel (rank ≥ 2).
pub(crate) fn add_penalties<M: Module>(loss: Tensor<1>, model: &M, l1: f64, l2: f64) -> Tensor<1> {
    if l1 == 0.0 && l2 == 0.0 {
        return loss;
    }
    struct Penalty {
        l1: f64,
        l2: f64,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for Penalty {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D < 2 {
                return;
            }
            let w = param.val();
            let mut term = w.clone().abs().sum().mul_scalar(self.l1);
            if self.l2 > 0.0 {
                term = term + w.square().sum().mul_scalar(self.l2 / 2.0);
            }
            self.total = Some(match self.total.take() {
                Some(total) => total + term,
                None => term,
            });
        }
    }
    let mut penalty = Penalty {
        l1,
        l2,
        total: None,
    };
    model.visit(&mut penalty);
    match penalty.total {
        Some(p) => loss + p,
        None => loss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::ParamId;
    use burn::tensor::Device;
    use scalelab_models::{FamilyModel, Mlp, SeededInit, rank_one_param_ids};
    use scalelab_spec::family::MlpConfig;

    #[test]
    fn penalties_add_l1_and_half_l2_of_matrices_only() {
        let device = Device::default();
        // 2 inputs, no hidden layer, 2 classes: a 2×2 weight and a bias. Seeded weights; the
        // penalty must equal l1·Σ|w| + l2/2·Σw² of the weight matrix alone.
        let model = Mlp::init(
            &MlpConfig {
                inputs: 2,
                hidden: Vec::new(),
                classes: 2,
                dropout: 0.0,
            },
            &mut SeededInit::new(3),
            &device,
        );
        struct Weights(Vec<f32>, Vec<ParamId>);
        impl ModuleVisitor for Weights {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if D == 2 {
                    self.0.extend(
                        param
                            .val()
                            .into_data()
                            .try_to_vec::<f32>()
                            .unwrap_or_default(),
                    );
                    self.1.push(param.id);
                }
            }
        }
        let mut w = Weights(Vec::new(), Vec::new());
        model.visit(&mut w);
        assert_eq!(w.0.len(), 4);
        let expected = 0.3 * w.0.iter().map(|v| f64::from(v.abs())).sum::<f64>()
            + 0.05 * w.0.iter().map(|v| f64::from(v * v)).sum::<f64>();
        let zero = Tensor::<1>::zeros([1], &device);
        let got = f64::from(add_penalties(zero, &model, 0.3, 0.1).into_scalar::<f32>());
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        assert!(!rank_one_param_ids(&model).contains(&w.1[0]));
    }
}
