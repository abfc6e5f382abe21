//! The safe backward on the CPU backend, against a naive fp64 reference of the gradients written here.

use flashsci::{Backend, BackwardSlices, Dtype, Mask, Plan, Precision, Shape, Status, Strides, Tensor, VarlenShape};

mod common;
use common::Rng;

/// Index of element (b, s, h, 0) of a contiguous [batch, seqlen, heads, head_dim] tensor.
fn index(seqlen: i64, heads: i64, head_dim: i64, b: i64, s: i64, h: i64) -> usize {
    (((b * seqlen + s) * heads + h) * head_dim) as usize
}

/// dL/dQ, dL/dK, dL/dV in fp64 for contiguous tensors, causal (top-left) or not: per row, P = softmax(scale·q·kᵀ),
/// O = P·V, D = dO·O, dS_j = P_j·(dO·v_j − D), dq += scale·dS_j·k_j, dk_j += scale·dS_j·q, dv_j += P_j·dO.
fn reference_gradients(
    shape: Shape,
    causal: bool,
    scale: f64,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dout: &[f32],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let Shape { batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim } = shape;
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
    let d = head_dim as usize;
    for b in 0..batch {
        for h in 0..heads_q {
            let g = h / (heads_q / heads_kv);
            for i in 0..seqlen_q {
                let keys = if causal { (i + 1).min(seqlen_k) } else { seqlen_k };
                let qi = index(seqlen_q, heads_q, head_dim, b, i, h);
                let kv_at = |j: i64| index(seqlen_k, heads_kv, head_dim, b, j, g);
                let s: Vec<f64> = (0..keys).map(|j| scale * dot(&q[qi..qi + d], &k[kv_at(j)..kv_at(j) + d])).collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let l: f64 = s.iter().map(|x| (x - m).exp()).sum();
                let p: Vec<f64> = s.iter().map(|x| (x - m).exp() / l).collect();
                let mut o = vec![0.0; d];
                for j in 0..keys {
                    for c in 0..d {
                        o[c] += p[j as usize] * v[kv_at(j) + c] as f64;
                    }
                }
                let row_term: f64 = (0..d).map(|c| dout[qi + c] as f64 * o[c]).sum();
                for j in 0..keys {
                    let ds = p[j as usize] * (dot(&dout[qi..qi + d], &v[kv_at(j)..kv_at(j) + d]) - row_term);
                    for c in 0..d {
                        dq[qi + c] += scale * ds * k[kv_at(j) + c] as f64;
                        dk[kv_at(j) + c] += scale * ds * q[qi + c] as f64;
                        dv[kv_at(j) + c] += p[j as usize] * dout[qi + c] as f64;
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}

/// max |got − want| / max |want|.
fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let error = got.iter().zip(want).fold(0.0f64, |m, (x, y)| {
        let e = (*x as f64 - y).abs();
        if e.is_nan() || e > m {
            e
        } else {
            m
        }
    });
    error / scale
}

/// fp32 gradients are exact up to the forward's fp32 o and lse and one rounding.
const FP32_TOLERANCE: f64 = 1e-5;

#[test]
fn backward_matches_the_fp64_gradients_with_grouped_heads() {
    let shape = Shape::new(2, 37, 45, 4, 2, 32);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (q, k, v, dout) = (rng.vec(shape.q_len()), rng.vec(shape.kv_len()), rng.vec(shape.kv_len()), rng.vec(shape.q_len()));
    for (mask, causal) in [(Mask::None, false), (Mask::Causal, true)] {
        let mut plan = Plan::new(Backend::Cpu).unwrap();
        plan.set_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap().set_mask(mask).unwrap();
        plan.set_deterministic(true).unwrap().set_precision(Precision::Ieee).unwrap();
        assert_eq!(plan.backward_workspace_size().unwrap(), 0);
        let mut o = vec![0f32; shape.q_len()];
        let mut lse = vec![0f32; shape.lse_len()];
        plan.forward(&q, &k, &v, &mut o, Some(&mut lse)).unwrap();
        let (mut dq, mut dk, mut dv) = (vec![f32::NAN; shape.q_len()], vec![f32::NAN; shape.kv_len()], vec![f32::NAN; shape.kv_len()]);
        plan.backward(BackwardSlices { q: &q, k: &k, v: &v, o: &o, dout: &dout, lse: &lse, dq: &mut dq, dk: &mut dk, dv: &mut dv })
            .unwrap();
        let (want_dq, want_dk, want_dv) = reference_gradients(shape, causal, 1.0 / (32f64).sqrt(), &q, &k, &v, &dout);
        assert!(relative_error(&dq, &want_dq) < FP32_TOLERANCE, "dq {:?}", relative_error(&dq, &want_dq));
        assert!(relative_error(&dk, &want_dk) < FP32_TOLERANCE, "dk {:?}", relative_error(&dk, &want_dk));
        assert!(relative_error(&dv, &want_dv) < FP32_TOLERANCE, "dv {:?}", relative_error(&dv, &want_dv));
    }
}

#[test]
fn backward_checks_its_slices_and_plan_and_writes_nothing_on_failure() {
    let shape = Shape::new(1, 9, 9, 2, 1, 16);
    let mut rng = Rng(7);
    let (q, k, v, dout) = (rng.vec(shape.q_len()), rng.vec(shape.kv_len()), rng.vec(shape.kv_len()), rng.vec(shape.q_len()));
    let mut plan = Plan::new(Backend::Cpu).unwrap();
    plan.set_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap();
    let mut o = vec![0f32; shape.q_len()];
    let mut lse = vec![0f32; shape.lse_len()];
    plan.forward(&q, &k, &v, &mut o, Some(&mut lse)).unwrap();
    let (mut dq, mut dk, mut dv) = (vec![-7f32; shape.q_len()], vec![-7f32; shape.kv_len()], vec![-7f32; shape.kv_len()]);

    // A short dk slice, a short lse, and a BHSD dq whose strides reach past a short slice.
    let err = plan
        .backward(BackwardSlices { q: &q, k: &k, v: &v, o: &o, dout: &dout, lse: &lse, dq: &mut dq, dk: &mut dk[1..], dv: &mut dv })
        .unwrap_err();
    assert_eq!(err.status(), Status::InvalidValue);
    assert!(err.message().contains("dk has"), "{}", err.message());
    let err = plan
        .backward(BackwardSlices { q: &q, k: &k, v: &v, o: &o, dout: &dout, lse: &lse[..3], dq: &mut dq, dk: &mut dk, dv: &mut dv })
        .unwrap_err();
    assert!(err.message().contains("lse has 3 elements"), "{}", err.message());
    plan.set_strides(Tensor::DQ, Strides { batch: 0, seq: 16, head: 9 * 16 + 8 }).unwrap();
    let err = plan
        .backward(BackwardSlices { q: &q, k: &k, v: &v, o: &o, dout: &dout, lse: &lse, dq: &mut dq, dk: &mut dk, dv: &mut dv })
        .unwrap_err();
    assert!(err.message().contains("dq has"), "{}", err.message());
    assert!(dq.iter().chain(&dk).chain(&dv).all(|x| *x == -7.0), "a failing backward wrote");

    // u16 slices do not hold an F32 plan; a varlen plan is backward_varlen's.
    let (q16, mut g16) = (vec![0u16; shape.q_len()], vec![0u16; shape.q_len()]);
    let (mut k16, mut v16) = (vec![0u16; shape.kv_len()], vec![0u16; shape.kv_len()]);
    let err = plan
        .backward(BackwardSlices {
            q: &q16, k: &q16[..shape.kv_len()], v: &q16[..shape.kv_len()], o: &q16, dout: &q16, lse: &lse,
            dq: &mut g16, dk: &mut k16, dv: &mut v16,
        })
        .unwrap_err();
    assert!(err.message().contains("cannot hold F32"), "{}", err.message());
    plan.set_varlen_shape(VarlenShape::new(1, 9, 9, 9, 9, 2, 1, 16)).unwrap();
    let err = plan
        .backward(BackwardSlices { q: &q, k: &k, v: &v, o: &o, dout: &dout, lse: &lse, dq: &mut dq, dk: &mut dk, dv: &mut dv })
        .unwrap_err();
    assert!(err.message().contains("call backward_varlen"), "{}", err.message());
    // The library's own checks come back as errors too: offsets that do not start at 0.
    let err = plan
        .backward_varlen(
            BackwardSlices { q: &q, k: &k, v: &v, o: &o, dout: &dout, lse: &lse, dq: &mut dq, dk: &mut dk, dv: &mut dv },
            &[1, 9],
            &[0, 9],
        )
        .unwrap_err();
    assert_eq!(err.message(), "flashsci_backward_varlen: cu_seqlens_q[0] (1) must be 0");
    assert!(dq.iter().chain(&dk).chain(&dv).all(|x| *x == -7.0), "a failing backward wrote");
}

#[test]
fn varlen_backward_of_equal_sequences_is_the_dense_backward_bit_for_bit() {
    let (batch, seqlen, heads, head_dim) = (3i64, 21i64, 2i64, 24i64);
    let dense = Shape::new(batch, seqlen, seqlen, heads, heads, head_dim);
    let packed = VarlenShape::new(batch, batch * seqlen, batch * seqlen, seqlen, seqlen, heads, heads, head_dim);
    let mut rng = Rng(99);
    let (q, k, v, dout) = (rng.vec(dense.q_len()), rng.vec(dense.kv_len()), rng.vec(dense.kv_len()), rng.vec(dense.q_len()));
    let cu: Vec<i32> = (0..=batch).map(|b| (b * seqlen) as i32).collect();
    let run = |varlen: bool| {
        let mut plan = Plan::new(Backend::Cpu).unwrap();
        if varlen {
            plan.set_varlen_shape(packed).unwrap();
        } else {
            plan.set_shape(dense).unwrap();
        }
        plan.set_dtype(Dtype::F32).unwrap().set_mask(Mask::CausalBottomRight).unwrap();
        let mut o = vec![0f32; dense.q_len()];
        // Varlen LSE is [heads, total]: a different order of the same rows.
        let mut lse = vec![0f32; dense.lse_len()];
        let (mut dq, mut dk, mut dv) = (vec![0f32; dense.q_len()], vec![0f32; dense.kv_len()], vec![0f32; dense.kv_len()]);
        if varlen {
            plan.forward_varlen(&q, &k, &v, &mut o, &cu, &cu, Some(&mut lse)).unwrap();
            let t = BackwardSlices { q: &q, k: &k, v: &v, o: &o, dout: &dout, lse: &lse, dq: &mut dq, dk: &mut dk, dv: &mut dv };
            plan.backward_varlen(t, &cu, &cu).unwrap();
        } else {
            plan.forward(&q, &k, &v, &mut o, Some(&mut lse)).unwrap();
            let t = BackwardSlices { q: &q, k: &k, v: &v, o: &o, dout: &dout, lse: &lse, dq: &mut dq, dk: &mut dk, dv: &mut dv };
            plan.backward(t).unwrap();
        }
        (dq, dk, dv)
    };
    let (dense_grads, varlen_grads) = (run(false), run(true));
    assert!(dense_grads.0.iter().any(|x| *x != 0.0));
    assert_eq!(dense_grads.0.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), varlen_grads.0.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    assert_eq!(dense_grads.1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), varlen_grads.1.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    assert_eq!(dense_grads.2.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), varlen_grads.2.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
}
