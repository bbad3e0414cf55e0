//! The backend extension under autodiff: each fused forward pass recorded with its hand-written
//! backward pass.

use burn::backend::TensorMetadata;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Flex};
use burn::tensor::{DType, Shape};

use crate::FusedOps;
use crate::attention::{
    KeyMask, SelfAttentionState, attention_backward, attention_forward, self_attention_backward,
    self_attention_forward,
};
use crate::batch_norm::{BatchNormState, batch_norm_backward, batch_norm_forward, channel_stats};
use crate::conv::{conv2d_backward, conv2d_forward, max_pool2x2_backward, max_pool2x2_forward};
use crate::cross_entropy::{class_ids, cross_entropy_backward, cross_entropy_forward};
use crate::gelu::{gelu_backward, gelu_forward};
use crate::layer_norm::{layer_norm_backward, layer_norm_forward};
use crate::linear::{linear_add_forward, linear_backward, linear_forward, matmul_forward};
use crate::recurrent::{RecurrentState, recurrent_backward, recurrent_forward};
use crate::simd::contiguous_f32;

impl<C: CheckpointStrategy> FusedOps for Autodiff<Flex, C> {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        pad_h: usize,
        pad_w: usize,
        relu: bool,
    ) -> FloatTensor<Self> {
        conv2d::<C>(x, weight, bias, [pad_h, pad_w], relu)
    }

    fn fused_recurrent(
        projected: FloatTensor<Self>,
        u: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        gates: usize,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Recurrent;

        impl Backward<Flex, 4> for Recurrent {
            type State = RecurrentState;

            fn backward(
                self,
                ops: Ops<Self::State, 4>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |state, grad| {
                    let [dx, du, db] = recurrent_backward(state, &grad);
                    let no_grad = FlexTensor::empty(Shape::new([0]), DType::F32);
                    [dx, du, db, no_grad] // the mask is data
                });
            }
        }

        let parents = [projected.node(), u.node(), bias.node(), mask.node()];
        let [projected, u, bias, mask] = [projected, u, bias, mask].map(|t| t.into_primitive());
        record::<_, C, 4>(Recurrent, parents, || {
            recurrent_forward(&projected, &u, &bias, &mask, gates, true)
        })
    }

    fn fused_channel_stats(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // Statistics only: the batch norm that uses them differentiates through them itself.
        <Self as burn::backend::AutodiffBackend>::from_inner(channel_stats(&x.into_primitive()))
    }

    fn fused_batch_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        var: FloatTensor<Self>,
        epsilon: f32,
        relu: bool,
        batch_stats: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct BatchNorm;

        impl Backward<Flex, 3> for BatchNorm {
            type State = BatchNormState;

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |state, grad| batch_norm_backward(&state, &grad));
            }
        }

        // The statistics are data here (see above): only x, γ and β are differentiated.
        let parents = [x.node(), gamma.node(), beta.node()];
        let [x, gamma, beta, mean, var] = [x, gamma, beta, mean, var].map(|t| t.into_primitive());
        record::<_, C, 3>(BatchNorm, parents, || {
            let out = batch_norm_forward(&x, [&gamma, &beta, &mean, &var], epsilon, relu);
            let state = BatchNormState {
                x,
                gamma,
                mean,
                var,
                epsilon,
                out: relu.then(|| out.clone()),
                batch_stats,
            };
            (out, state)
        })
    }

    fn fused_max_pool2x2(x: FloatTensor<Self>) -> FloatTensor<Self> {
        max_pool2x2::<C>(x)
    }

    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CausalAttention;

        impl Backward<Flex, 3> for CausalAttention {
            /// q, k, v, the probabilities, the scale.
            type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor, f32);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(q, k, v, probs, scale), grad| {
                    attention_backward(q, k, v, probs, grad, scale)
                });
            }
        }

        let parents = [q.node(), k.node(), v.node()];
        let [q, k, v] = [q, k, v].map(|x| x.into_primitive());
        record::<_, C, 3>(CausalAttention, parents, || {
            let (out, probs) = attention_forward(q.clone(), k.clone(), v.clone(), scale);
            (out, (q, k, v, probs, scale))
        })
    }

    fn causal_self_attention(
        qkv: FloatTensor<Self>,
        batch: usize,
        heads: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        let t = qkv.shape()[0] / batch.max(1);
        let mask = KeyMask {
            heads,
            lengths: vec![t; batch],
            causal: true,
        };
        self_attention::<C>(qkv, mask, scale)
    }

    fn masked_self_attention(
        qkv: FloatTensor<Self>,
        lengths: IntTensor<Self>,
        heads: usize,
        scale: f32,
        causal: bool,
    ) -> FloatTensor<Self> {
        let lengths = class_ids(lengths);
        let mask = KeyMask {
            heads,
            lengths,
            causal,
        };
        self_attention::<C>(qkv, mask, scale)
    }

    fn fused_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LinearOp;

        impl Backward<Flex, 3> for LinearOp {
            /// The input and the weight.
            type State = (FlexTensor, FlexTensor);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(x, weight), grad| {
                    linear_backward(&x, &weight, &grad, true)
                });
            }
        }

        let parents = [x.node(), weight.node(), bias.node()];
        let [x, weight, bias] = [x, weight, bias].map(|t| t.into_primitive());
        record::<_, C, 3>(LinearOp, parents, || {
            (linear_forward(&x, &weight, &bias), (x, weight))
        })
    }

    fn fused_linear_add(
        residual: FloatTensor<Self>,
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LinearAdd;

        impl Backward<Flex, 4> for LinearAdd {
            /// The input and the weight.
            type State = (FlexTensor, FlexTensor);

            fn backward(
                self,
                ops: Ops<Self::State, 4>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(x, weight), grad| {
                    let [dx, dw, db] = linear_backward(&x, &weight, &grad, true);
                    [grad, dx, dw, db] // the residual passes the gradient through
                });
            }
        }

        let parents = [residual.node(), x.node(), weight.node(), bias.node()];
        let [residual, x, weight, bias] = [residual, x, weight, bias].map(|t| t.into_primitive());
        record::<_, C, 4>(LinearAdd, parents, || {
            let out = linear_add_forward(&residual, &x, &weight, &bias);
            (out, (x, weight))
        })
    }

    fn fused_matmul(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Matmul;

        impl Backward<Flex, 2> for Matmul {
            /// The input and the weight.
            type State = (FlexTensor, FlexTensor);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(x, weight), grad| {
                    let [dx, dw, _] = linear_backward(&x, &weight, &grad, false);
                    [dx, dw]
                });
            }
        }

        let parents = [x.node(), weight.node()];
        let [x, weight] = [x, weight].map(|t| t.into_primitive());
        record::<_, C, 2>(Matmul, parents, || {
            (matmul_forward(&x, &weight), (x, weight))
        })
    }

    fn fused_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Gelu;

        impl Backward<Flex, 1> for Gelu {
            /// The input.
            type State = FlexTensor;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |x, grad| [gelu_backward(&x, grad)]);
            }
        }

        let parents = [x.node()];
        let x = x.into_primitive();
        record::<_, C, 1>(Gelu, parents, || (gelu_forward(&x), x))
    }

    fn fused_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNormOp;

        impl Backward<Flex, 3> for LayerNormOp {
            /// The input, the gain, and each row's mean and 1/std.
            type State = (FlexTensor, FlexTensor, Vec<[f32; 2]>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(x, gamma, stats), grad| {
                    layer_norm_backward(&x, &gamma, &stats, grad)
                });
            }
        }

        let parents = [x.node(), gamma.node(), beta.node()];
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.into_primitive());
        record::<_, C, 3>(LayerNormOp, parents, || {
            let (y, stats) = layer_norm_forward(&x, &gamma, &beta, epsilon);
            (y, (x, gamma, stats))
        })
    }

    fn fused_cross_entropy(logits: FloatTensor<Self>, targets: FlexTensor) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CrossEntropy;

        impl Backward<Flex, 1> for CrossEntropy {
            /// The probabilities and the class ids.
            type State = (FlexTensor, Vec<usize>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                register(ops, grads, |(probs, targets), grad| {
                    let upstream = contiguous_f32(&grad.to_contiguous())[0];
                    [cross_entropy_backward(probs, &targets, upstream)]
                });
            }
        }

        let parents = [logits.node()];
        let logits = logits.into_primitive();
        let targets = class_ids(targets);
        record::<_, C, 1>(CrossEntropy, parents, || {
            let (loss, probs) = cross_entropy_forward(&logits, &targets);
            (loss, (probs, targets))
        })
    }
}

/// A convolution's state for its backward pass: the input, the kernel, the output when a
/// ReLU was fused (its mask), the padding, and whether there is a bias.
type ConvState = (FlexTensor, FlexTensor, Option<FlexTensor>, [usize; 2], bool);

/// Self-attention from packed projections, recorded with its backward pass.
fn self_attention<C: CheckpointStrategy>(
    qkv: FloatTensor<Autodiff<Flex, C>>,
    mask: KeyMask,
    scale: f32,
) -> FloatTensor<Autodiff<Flex, C>> {
    #[derive(Debug)]
    struct SelfAttention;

    impl Backward<Flex, 1> for SelfAttention {
        type State = SelfAttentionState;

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            register(ops, grads, |state, grad| {
                [self_attention_backward(state, &grad)]
            });
        }
    }

    let parents = [qkv.node()];
    let qkv = qkv.into_primitive();
    record::<_, C, 1>(SelfAttention, parents, || {
        self_attention_forward(&qkv, &mask, scale)
    })
}

/// The convolution recorded with its backward pass.
fn conv2d<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    weight: FloatTensor<Autodiff<Flex, C>>,
    bias: FloatTensor<Autodiff<Flex, C>>,
    pad: [usize; 2],
    relu: bool,
) -> FloatTensor<Autodiff<Flex, C>> {
    #[derive(Debug)]
    struct Conv2d;

    impl Backward<Flex, 3> for Conv2d {
        type State = ConvState;

        fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            let need_dx = ops.parents[0].is_some();
            register(ops, grads, |(x, weight, out, pad, with_bias), grad| {
                conv2d_backward(&x, &weight, out.as_ref(), &grad, pad, [need_dx, with_bias])
            });
        }
    }

    let parents = [x.node(), weight.node(), bias.node()];
    let [x, weight, bias] = [x, weight, bias].map(|t| t.into_primitive());
    record::<_, C, 3>(Conv2d, parents, || {
        let out = conv2d_forward(&x, &weight, &bias, pad, relu);
        let with_bias = bias.layout().num_elements() > 0;
        let kept = relu.then(|| out.clone());
        (out, (x, weight, kept, pad, with_bias))
    })
}

/// The 2×2 max-pool recorded with its backward pass.
fn max_pool2x2<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
) -> FloatTensor<Autodiff<Flex, C>> {
    #[derive(Debug)]
    struct MaxPool;

    impl Backward<Flex, 1> for MaxPool {
        /// The input's shape and each window's winner.
        type State = ([usize; 4], Vec<u8>);

        fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
            register(ops, grads, |(dims, winner), grad| {
                [max_pool2x2_backward(dims, &winner, &grad)]
            });
        }
    }

    let parents = [x.node()];
    let x = x.into_primitive();
    record::<_, C, 1>(MaxPool, parents, || {
        let dims = x.layout().shape().dims::<4>();
        let (out, winner) = max_pool2x2_forward(&x);
        (out, (dims, winner))
    })
}

/// Puts a fused operation in the autodiff graph: `forward` returns the output and the state
/// its backward pass needs (a by-product of the forward pass, so computing it costs nothing
/// when no input is tracked; the state is then dropped).
pub(crate) fn record<O, C, const N: usize>(
    op: O,
    parents: [NodeGuard; N],
    forward: impl FnOnce() -> (FlexTensor, O::State),
) -> FloatTensor<Autodiff<Flex, C>>
where
    O: Backward<Flex, N>,
    C: CheckpointStrategy,
{
    match op.prepare::<C>(parents).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, state) = forward();
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward().0),
    }
}

/// The backward step of every fused operation: `gradients` turns the kept state and the
/// output's gradient into the inputs' gradients, registered for the inputs that are tracked.
pub(crate) fn register<S, const N: usize>(
    ops: Ops<S, N>,
    grads: &mut Gradients,
    gradients: impl FnOnce(S, FlexTensor) -> [FlexTensor; N],
) {
    let grad = grads.consume::<Flex>(&ops.node);
    for (parent, g) in ops.parents.into_iter().zip(gradients(ops.state, grad)) {
        if let Some(node) = parent {
            grads.register::<Flex>(node.id, g);
        }
    }
}
