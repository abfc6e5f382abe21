//! One causal attention forward on the CPU backend, with its LSE.
//!
//!     PKG_CONFIG_PATH=<prefix>/lib/pkgconfig cargo run --example attention
use flashsci::{Backend, Dtype, Mask, Plan, Shape};

fn main() -> Result<(), flashsci::Error> {
    println!("libflashsci {}", flashsci::version_string());
    let shape = Shape::new(1, 256, 256, 8, 2, 64); // 8 query heads share 2 kv heads (GQA)
    let mut plan = Plan::new(Backend::Cpu)?;
    plan.set_shape(shape)?.set_dtype(Dtype::F32)?.set_mask(Mask::Causal)?;

    let fill = |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| ((i * 7919 + seed) % 1000) as f32 / 500.0 - 1.0).collect() };
    let (q, k, v) = (fill(shape.q_len(), 1), fill(shape.kv_len(), 2), fill(shape.kv_len(), 3));
    let mut o = vec![0f32; shape.q_len()];
    let mut lse = vec![0f32; shape.lse_len()];
    plan.forward(&q, &k, &v, &mut o, Some(&mut lse))?;

    println!("kernel {}, o[0..4] = {:?}, lse[0] = {} (row 0 sees one key: scale·q0·k0)", plan.kernel_name()?, &o[..4], lse[0]);
    Ok(())
}
