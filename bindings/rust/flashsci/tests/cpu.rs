//! The safe API on the CPU backend, against a naive fp64 reference written here.

use flashsci::{Backend, Dtype, Error, Mask, Plan, Shape, Status, Strides, Tensor, VarlenShape};
use std::sync::Arc;

mod common;
use common::Rng;

fn to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    ((u + 0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Element (b, s, h, d) of a tensor with the given strides.
fn at(x: &[f32], st: Strides, b: i64, s: i64, h: i64, d: i64) -> f64 {
    x[(b * st.batch + s * st.seq + h * st.head + d) as usize] as f64
}

/// Naive attention in fp64: (o [b, s_q, h_q, d] contiguous, lse [b, h_q, s_q]).
fn reference(shape: Shape, strides: [Strides; 3], q: &[f32], k: &[f32], v: &[f32], mask: Mask, scale: f64) -> (Vec<f64>, Vec<f64>) {
    let Shape { batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim } = shape;
    let mut o = vec![0.0; shape.q_len()];
    let mut lse = vec![0.0; shape.lse_len()];
    for b in 0..batch {
        for h in 0..heads_q {
            let kvh = h / (heads_q / heads_kv);
            for i in 0..seqlen_q {
                let last = match mask {
                    Mask::None => seqlen_k - 1,
                    Mask::Causal => i.min(seqlen_k - 1),
                    Mask::CausalBottomRight => (i + seqlen_k - seqlen_q).min(seqlen_k - 1),
                };
                let lse_at = ((b * heads_q + h) * seqlen_q + i) as usize;
                if last < 0 {
                    lse[lse_at] = f64::NEG_INFINITY;
                    continue;
                }
                let s: Vec<f64> = (0..=last)
                    .map(|j| scale * (0..head_dim).map(|d| at(q, strides[0], b, i, h, d) * at(k, strides[1], b, j, kvh, d)).sum::<f64>())
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let l: f64 = s.iter().map(|x| (x - m).exp()).sum();
                lse[lse_at] = m + l.ln();
                for d in 0..head_dim {
                    let acc: f64 = (0..=last).map(|j| (s[j as usize] - m).exp() * at(v, strides[2], b, j, kvh, d)).sum();
                    o[(((b * seqlen_q + i) * heads_q + h) * head_dim + d) as usize] = acc / l;
                }
            }
        }
    }
    (o, lse)
}

fn max_err(a: impl Iterator<Item = f64>, b: &[f64]) -> f64 {
    a.zip(b).map(|(x, y)| if x == *y { 0.0 } else { (x - y).abs() }).fold(0.0, |m, e| if e.is_nan() || e > m { e } else { m })
}

fn contiguous(shape: Shape) -> [Strides; 3] {
    let q = Strides { batch: shape.seqlen_q * shape.heads_q * shape.head_dim, seq: shape.heads_q * shape.head_dim, head: shape.head_dim };
    let kv = Strides { batch: shape.seqlen_k * shape.heads_kv * shape.head_dim, seq: shape.heads_kv * shape.head_dim, head: shape.head_dim };
    [q, kv, kv]
}

#[test]
fn version_matches_the_header() {
    assert_eq!(flashsci::version(), flashsci::sys::FLASHSCI_VERSION);
    let parts: Vec<i32> = flashsci::version_string().split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts[0] * 10000 + parts[1] * 100 + parts[2], flashsci::version());
}

#[test]
fn f32_matches_fp64_for_every_mask_with_gqa() {
    let shape = Shape::new(2, 37, 29, 4, 2, 16);
    let mut rng = Rng(0x5eed);
    let (q, k, v) = (rng.vec(shape.q_len()), rng.vec(shape.kv_len()), rng.vec(shape.kv_len()));
    for mask in [Mask::None, Mask::Causal, Mask::CausalBottomRight] {
        let mut plan = Plan::new(Backend::Cpu).unwrap();
        plan.set_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap().set_mask(mask).unwrap();
        assert!(plan.kernel_name().unwrap().starts_with("cpu_")); // cpu_avx512, cpu_avx2, cpu_portable or cpu_reference
        let mut o = vec![f32::NAN; shape.q_len()];
        let mut lse = vec![f32::NAN; shape.lse_len()];
        plan.forward(&q, &k, &v, &mut o, Some(&mut lse)).unwrap();
        let (ro, rlse) = reference(shape, contiguous(shape), &q, &k, &v, mask, 0.25);
        let (eo, else_) = (max_err(o.iter().map(|&x| x as f64), &ro), max_err(lse.iter().map(|&x| x as f64), &rlse));
        assert!(eo <= 1e-5, "{mask:?}: max |o - ref| = {eo}");
        assert!(else_ <= 1e-5, "{mask:?}: max |lse - ref| = {else_}");
    }
}

#[test]
fn bottom_right_rows_without_keys_get_zero_and_minus_infinity() {
    let shape = Shape::new(1, 6, 3, 1, 1, 8); // rows 0..2 see no key
    let mut rng = Rng(7);
    let (q, k, v) = (rng.vec(shape.q_len()), rng.vec(shape.kv_len()), rng.vec(shape.kv_len()));
    let mut plan = Plan::new(Backend::Cpu).unwrap();
    plan.set_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap().set_mask(Mask::CausalBottomRight).unwrap();
    let mut o = vec![f32::NAN; shape.q_len()];
    let mut lse = vec![0f32; shape.lse_len()];
    plan.forward(&q, &k, &v, &mut o, Some(&mut lse)).unwrap();
    assert!(lse[..3].iter().all(|&x| x == f32::NEG_INFINITY), "{lse:?}");
    assert!(o[..3 * 8].iter().all(|&x| x == 0.0));
    assert!(lse[3..].iter().all(|x| x.is_finite()));
}

#[test]
fn bf16_bits_with_bhsd_strides_and_custom_scale() {
    let shape = Shape::new(2, 19, 23, 2, 1, 32);
    let mut rng = Rng(99);
    let round = |x: Vec<f32>| -> (Vec<u16>, Vec<f32>) {
        let bits: Vec<u16> = x.iter().map(|&f| to_bf16(f)).collect();
        let back = bits.iter().map(|&b| from_bf16(b)).collect();
        (bits, back)
    };
    let (q, qf) = round(rng.vec(shape.q_len()));
    let (k, kf) = round(rng.vec(shape.kv_len()));
    let (v, vf) = round(rng.vec(shape.kv_len()));
    // q and o stored [batch, heads, seqlen, head_dim]; k, v stay BSHD.
    let bhsd = Strides { batch: shape.heads_q * shape.seqlen_q * shape.head_dim, seq: shape.head_dim, head: shape.seqlen_q * shape.head_dim };
    let mut plan = Plan::new(Backend::Cpu).unwrap();
    plan.set_shape(shape).unwrap().set_dtype(Dtype::BF16).unwrap().set_softmax_scale(0.1).unwrap();
    plan.set_strides(Tensor::Q, bhsd).unwrap().set_strides(Tensor::O, bhsd).unwrap();
    assert_eq!(plan.strides(Tensor::Q), bhsd);
    let mut o = vec![0u16; shape.q_len()];
    plan.forward(&q, &k, &v, &mut o, None).unwrap();
    let [_, kvs, _] = contiguous(shape);
    let (ro, _) = reference(shape, [bhsd, kvs, kvs], &qf, &kf, &vf, Mask::None, 0.1f32 as f64);
    let mut worst = 0f64;
    for b in 0..shape.batch {
        for i in 0..shape.seqlen_q {
            for h in 0..shape.heads_q {
                for d in 0..shape.head_dim {
                    let got = from_bf16(o[(b * bhsd.batch + i * bhsd.seq + h * bhsd.head + d) as usize]) as f64;
                    let want = ro[(((b * shape.seqlen_q + i) * shape.heads_q + h) * shape.head_dim + d) as usize];
                    worst = worst.max((got - want).abs());
                }
            }
        }
    }
    assert!(worst <= 1e-2, "bf16: max |o - ref| = {worst}");
}

#[test]
fn errors_carry_status_and_the_library_message() {
    let mut plan = Plan::new(Backend::Cpu).unwrap();
    let err: Error = plan.set_shape(Shape::new(1, 4, 4, 2, 2, 12)).unwrap_err();
    assert_eq!(err.status(), Status::InvalidValue);
    assert!(err.message().contains("head_dim"), "{}", err.message());
    assert!(err.to_string().contains("invalid value"), "{err}");
    assert_eq!(plan.shape(), None, "a failed setter changes nothing");

    let err = plan.set_softmax_scale(f32::NAN).unwrap_err();
    assert_eq!(err.status(), Status::InvalidValue);
    let err = plan.set_shape(Shape::new(1, 4, 4, 3, 2, 8)).unwrap_err();
    assert!(err.message().contains("heads_kv"), "{}", err.message());
}

#[test]
fn forward_refuses_short_slices_wrong_types_and_missing_setup() {
    let shape = Shape::new(1, 8, 8, 2, 2, 8);
    let mut plan = Plan::new(Backend::Cpu).unwrap();
    let q = vec![0f32; shape.q_len()];
    let mut o = vec![7f32; shape.q_len()];
    let err = plan.forward(&q, &q, &q, &mut o, None).unwrap_err();
    assert!(err.message().contains("shape"), "{}", err.message());

    plan.set_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap();
    let short = vec![0f32; shape.kv_len() - 1];
    let err = plan.forward(&q, &short, &q, &mut o, None).unwrap_err();
    assert_eq!(err.status(), Status::InvalidValue);
    assert!(err.message().contains("k has"), "{}", err.message());
    let mut lse = vec![0f32; shape.lse_len() - 1];
    let err = plan.forward(&q, &q, &q, &mut o, Some(&mut lse)).unwrap_err();
    assert!(err.message().contains("lse"), "{}", err.message());
    let bits = vec![0u16; shape.q_len()];
    let mut obits = vec![0u16; shape.q_len()];
    let err = plan.forward(&bits, &bits, &bits, &mut obits, None).unwrap_err();
    assert!(err.message().contains("F32"), "{}", err.message());
    assert!(o.iter().all(|&x| x == 7.0), "nothing written on failure");

    // Strides reaching past a slice are caught before the library reads anything.
    plan.set_strides(Tensor::K, Strides { batch: 0, seq: 64, head: 8 }).unwrap();
    let err = plan.forward(&q, &q, &q, &mut o, None).unwrap_err();
    assert!(err.message().contains("k has 128 elements, its shape and strides reach 464"), "{}", err.message());
}

#[test]
fn cuda_plan_is_refused_for_host_slices_or_reports_no_device() {
    match Plan::new(Backend::Cuda) {
        Err(err) => assert_eq!(err.status(), Status::NoDevice, "{err}"),
        Ok(mut plan) => {
            let shape = Shape::new(1, 8, 8, 1, 1, 8);
            plan.set_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap();
            let x = vec![0f32; shape.q_len()];
            let mut o = x.clone();
            let err = plan.forward(&x, &x, &x, &mut o, None).unwrap_err();
            assert!(err.message().contains("CPU plan"), "{err}");
        }
    }
    let auto = Plan::new(Backend::Auto).unwrap();
    assert_ne!(auto.backend(), Backend::Auto, "AUTO is resolved");
}

#[test]
fn one_plan_serves_concurrent_forwards() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Plan>();

    let shape = Shape::new(1, 64, 64, 4, 4, 32);
    let mut plan = Plan::new(Backend::Cpu).unwrap();
    plan.set_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap().set_mask(Mask::Causal).unwrap();
    let plan = Arc::new(plan);
    let mut rng = Rng(3);
    let inputs = Arc::new((rng.vec(shape.q_len()), rng.vec(shape.kv_len()), rng.vec(shape.kv_len())));
    let mut expected = vec![0f32; shape.q_len()];
    plan.forward(&inputs.0, &inputs.1, &inputs.2, &mut expected, None).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (plan, inputs) = (Arc::clone(&plan), Arc::clone(&inputs));
            std::thread::spawn(move || {
                let mut o = vec![0f32; shape.q_len()];
                for _ in 0..5 {
                    plan.forward(&inputs.0, &inputs.1, &inputs.2, &mut o, None).unwrap();
                }
                o
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), expected);
    }
    // Plans move between threads and drop there.
    let plan = Arc::try_unwrap(plan).unwrap();
    std::thread::spawn(move || drop(plan)).join().unwrap();
}

#[test]
fn window_softcap_and_alibi_setters() {
    let shape = Shape::new(1, 6, 3, 2, 1, 8); // window (0, 0), no mask: rows 0..2 see no key
    let mut rng = Rng(11);
    let (q, k, v) = (rng.vec(shape.q_len()), rng.vec(shape.kv_len()), rng.vec(shape.kv_len()));
    let mut plan = Plan::new(Backend::Cpu).unwrap();
    let err = plan.set_alibi_slopes(Some(&[0.5, 0.25])).unwrap_err();
    assert!(err.message().contains("set_shape"), "{}", err.message());
    let err = plan.set_window(Some(-2), None).unwrap_err();
    assert!(err.message().contains("window_left (-2)"), "{}", err.message());
    assert_eq!(plan.set_softcap(-1.0).unwrap_err().status(), Status::InvalidValue);
    plan.set_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap();
    assert_eq!(plan.set_alibi_slopes(Some(&[0.5])).unwrap_err().status(), Status::InvalidValue);
    plan.set_window(Some(0), Some(0)).unwrap().set_softcap(5.0).unwrap().set_alibi_slopes(Some(&[0.5, 0.25])).unwrap();
    let mut o = vec![f32::NAN; shape.q_len()];
    let mut lse = vec![0f32; shape.lse_len()];
    plan.forward(&q, &k, &v, &mut o, Some(&mut lse)).unwrap();
    for h in 0..2usize {
        let row_lse = &lse[h * 6..(h + 1) * 6]; // lse is [batch, heads_q, seqlen_q]
        assert!(row_lse[..3].iter().all(|&x| x == f32::NEG_INFINITY), "{lse:?}");
        assert!(row_lse[3..].iter().all(|x| x.is_finite()), "{lse:?}");
    }
    assert!(o[..3 * 2 * 8].iter().all(|&x| x == 0.0));
    // Rows 3..5 see one key each: O is that key's value row, LSE its final score.
    for i in 3..6usize {
        for h in 0..2usize {
            for d in 0..8usize {
                assert_eq!(o[(i * 2 + h) * 8 + d], v[(i - 3) * 8 + d]);
            }
        }
    }
}

#[test]
fn varlen_matches_fp64_sequence_by_sequence() {
    // Sequences of 3, 0, 17 and 9 queries over 5, 2, 17 and 0 keys (GQA 4:2), packed; one spare token after them.
    let (lens_q, lens_k) = ([3i64, 0, 17, 9], [5i64, 2, 17, 0]);
    let cumulative = |lens: &[i64]| -> Vec<i32> {
        std::iter::once(0).chain(lens.iter().scan(0i32, |sum, &n| { *sum += n as i32; Some(*sum) })).collect()
    };
    let (cu_q, cu_k) = (cumulative(&lens_q), cumulative(&lens_k));
    let shape = VarlenShape::new(4, 30, 24, 17, 17, 4, 2, 16);
    let mut rng = Rng(0x7a71);
    let (q, k, v) = (rng.vec(shape.q_len()), rng.vec(shape.kv_len()), rng.vec(shape.kv_len()));
    for mask in [Mask::None, Mask::Causal, Mask::CausalBottomRight] {
        let mut plan = Plan::new(Backend::Cpu).unwrap();
        plan.set_varlen_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap().set_mask(mask).unwrap();
        assert_eq!((plan.varlen_shape(), plan.shape()), (Some(shape), None));
        let mut o = vec![f32::NAN; shape.q_len()];
        let mut lse = vec![f32::NAN; shape.lse_len()];
        plan.forward_varlen(&q, &k, &v, &mut o, &cu_q, &cu_k, Some(&mut lse)).unwrap();
        let row = (shape.heads_q * shape.head_dim) as usize;
        for b in 0..4usize {
            let (q0, k0) = (cu_q[b] as usize, cu_k[b] as usize);
            let (lq, lk) = (lens_q[b], lens_k[b]);
            if lq == 0 {
                continue;
            }
            let rows = q0..q0 + lq as usize;
            if lk == 0 {
                assert!(o[rows.start * row..rows.end * row].iter().all(|&x| x == 0.0), "{mask:?} sequence {b}");
                assert!((0..4).all(|h| lse[h * 30 + q0..h * 30 + q0 + lq as usize].iter().all(|&x| x == f32::NEG_INFINITY)));
                continue;
            }
            let seq = Shape::new(1, lq, lk, 4, 2, 16);
            let kv_row = (shape.heads_kv * shape.head_dim) as usize;
            let (ro, rlse) = reference(seq, contiguous(seq), &q[q0 * row..], &k[k0 * kv_row..], &v[k0 * kv_row..], mask, 0.25);
            let eo = max_err(o[rows.start * row..rows.end * row].iter().map(|&x| x as f64), &ro);
            assert!(eo <= 1e-5, "{mask:?} sequence {b}: max |o - ref| = {eo}");
            for h in 0..4usize {
                let got = lse[h * 30 + q0..h * 30 + q0 + lq as usize].iter().map(|&x| x as f64);
                let e = max_err(got, &rlse[h * lq as usize..(h + 1) * lq as usize]);
                assert!(e <= 1e-5, "{mask:?} sequence {b} head {h}: max |lse - ref| = {e}");
            }
        }
        // The spare token (row 29) belongs to no sequence: not written.
        assert!(o[29 * row..].iter().all(|x| x.is_nan()) && (0..4).all(|h| lse[h * 30 + 29].is_nan()));
    }
}

#[test]
fn varlen_and_dense_forwards_refuse_each_other_and_bad_offsets() {
    let shape = VarlenShape::new(2, 10, 10, 6, 6, 2, 2, 8);
    let mut plan = Plan::new(Backend::Cpu).unwrap();
    plan.set_varlen_shape(shape).unwrap().set_dtype(Dtype::F32).unwrap();
    let x = vec![0.5f32; shape.q_len()];
    let mut o = vec![7f32; shape.q_len()];
    let err = plan.forward(&x, &x, &x, &mut o, None).unwrap_err();
    assert!(err.message().contains("forward_varlen"), "{}", err.message());
    let err = plan.forward_varlen(&x, &x, &x, &mut o, &[0, 4], &[0, 4, 10], None).unwrap_err();
    assert!(err.message().contains("cu_seqlens_q has 2 offsets"), "{}", err.message());
    let err = plan.forward_varlen(&x, &x, &x, &mut o, &[0, 7, 3], &[0, 4, 10], None).unwrap_err();
    assert_eq!(err.status(), Status::InvalidValue);
    assert!(err.message().contains("cu_seqlens_q[1] - cu_seqlens_q[0] (7) exceeds max_seqlen_q (6)"), "{}", err.message());
    let err = plan.set_strides(Tensor::V, Strides { batch: 1, seq: 16, head: 8 }).unwrap_err();
    assert!(err.message().contains("batch_stride of v (1) must be 0"), "{}", err.message());
    assert!(o.iter().all(|&x| x == 7.0), "nothing written on failure");
    plan.forward_varlen(&x, &x, &x, &mut o, &[0, 4, 10], &[0, 6, 10], None).unwrap();
    plan.set_shape(Shape::new(1, 10, 10, 2, 2, 8)).unwrap();
    let err = plan.forward_varlen(&x, &x, &x, &mut o, &[0, 4, 10], &[0, 6, 10], None).unwrap_err();
    assert!(err.message().contains("set_varlen_shape"), "{}", err.message());
    plan.forward(&x, &x, &x, &mut o, None).unwrap();
    let err = Plan::new(Backend::Cpu).unwrap().set_varlen_shape(VarlenShape::new(2, 10, 10, 11, 6, 2, 2, 8)).unwrap_err();
    assert!(err.message().contains("max_seqlen_q (11) must not exceed total_q (10)"), "{}", err.message());
}
