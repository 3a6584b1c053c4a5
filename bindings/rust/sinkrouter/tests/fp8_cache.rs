//! An FP8 E4M3 cache through the safe crate: f32 K/V in, f32 back within E4M3's rounding of
//! each row's scale, dense decode against float64 over what the cache holds, and FP8 refused
//! as a query type.
mod support;

use std::mem::size_of;
use std::ptr::null_mut;

use sinkrouter::{Bf16Bits, DecodeOptions, DecodeStep, Dtype, KvCache, KvCacheOptions, RoutingMode};
use sinkrouter_sys as sys;
use support::sink_context::{diffuse, Shape};
use support::{add_sequence_with, cpu_context, reference_attention, relative_error};

const SHAPE: Shape = Shape { kv_heads: 2, group: 4, head_dim: 128, tokens: 300 };

fn fp8_cache(context: &sinkrouter::Context) -> KvCache {
    let options = KvCacheOptions {
        head_dim: SHAPE.head_dim as i32,
        dtype: Dtype::Fp8E4m3,
        ..KvCacheOptions::new(1, SHAPE.kv_heads as i32, 1024).unwrap()
    };
    KvCache::new(context, &options).unwrap()
}

/// Each element of `stored` is within E4M3's rounding of `appended`: 2^-4 relative (3 mantissa
/// bits) plus half a subnormal step, 2^-10 of the row's scale s = amax / 448.
fn assert_within_fp8_rounding(name: &str, appended: &[f32], stored: &[f32], head_dim: usize) {
    assert_eq!(appended.len(), stored.len());
    for (r, (row, got)) in appended.chunks(head_dim).zip(stored.chunks(head_dim)).enumerate() {
        let amax = row.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
        let s = amax / 448.0;
        for (d, (&x, &y)) in row.iter().zip(got).enumerate() {
            let (x, y) = (x as f64, y as f64);
            let allowed = (2f64.powi(-4) * x.abs() + 2f64.powi(-10) * s) * (1.0 + 1e-6);
            assert!(
                (y - x).abs() <= allowed,
                "{name} row {r} element {d}: appended {x}, read back {y}, |error| {} > {allowed}",
                (y - x).abs()
            );
        }
    }
}

#[test]
fn f32_round_trip_is_within_fp8_rounding() {
    let context = cpu_context();
    let cache = fp8_cache(&context);
    assert_eq!(cache.options().dtype, Dtype::Fp8E4m3);
    let data = diffuse(SHAPE, 81);
    let seq = add_sequence_with(&cache, &data.k, &data.v);
    assert_eq!(cache.length(seq, 0).unwrap(), SHAPE.tokens as i64);

    let (k, v) = cache.read_vec::<f32>(seq, 0, 0, SHAPE.tokens).unwrap();
    assert_within_fp8_rounding("K", &data.k, &k, SHAPE.head_dim);
    assert_within_fp8_rounding("V", &data.v, &v, SHAPE.head_dim);
    assert_ne!(k, data.k, "an FP8 cache stored f32 K exactly: it did not quantize");

    // bf16 buffers read the same stored values (an FP8 code times its scale), rounded once more.
    let (k_bf16, _) = cache.read_vec::<Bf16Bits>(seq, 0, 0, SHAPE.tokens).unwrap();
    let widened: Vec<Bf16Bits> = k.iter().map(|&x| Bf16Bits::from_f32(x)).collect();
    assert_eq!(k_bf16, widened);
}

#[test]
fn dense_decode_matches_float64_over_the_stored_values() {
    let context = cpu_context();
    let cache = fp8_cache(&context);
    let data = diffuse(SHAPE, 82);
    let seq = add_sequence_with(&cache, &data.k, &data.v);
    let (k, v) = cache.read_vec::<f32>(seq, 0, 0, SHAPE.tokens).unwrap();
    let scale = 1.0 / (SHAPE.head_dim as f64).sqrt();
    let expected = reference_attention(&data.q, &k, &v, SHAPE.kv_heads, SHAPE.head_dim, scale);

    let mut out = vec![f32::NAN; data.q.len()]; // poisoned: an unwritten row fails
    let dense = DecodeOptions { routing: RoutingMode::Off, ..DecodeOptions::new().unwrap() };
    context.decode(&cache, DecodeStep::new(0, &[seq], SHAPE.q_heads() as i32, &data.q, &mut out), &dense).unwrap();
    for h in 0..SHAPE.q_heads() {
        let rows = h * SHAPE.head_dim..(h + 1) * SHAPE.head_dim;
        let error = relative_error(&out[rows.clone()], &expected[rows]);
        assert!(error < 1e-4, "q-head {h}: relative error {error:e} against float64 over the stored K/V");
    }
}

#[test]
fn fp8_is_refused_as_a_query_dtype() {
    let context = cpu_context();
    let cache = fp8_cache(&context);
    let data = diffuse(SHAPE, 83);
    let seq = add_sequence_with(&cache, &data.k, &data.v);
    let q_fp8: Vec<u8> = vec![0x38; SHAPE.q_heads() * SHAPE.head_dim]; // E4M3 1.0
    let mut out = vec![f32::NAN; SHAPE.q_heads() * SHAPE.head_dim];
    let mut args = std::mem::MaybeUninit::<sys::sr_decode_args>::zeroed();
    // SAFETY: the pointer and size describe one sr_decode_args.
    let status = unsafe { sys::sr_decode_args_default(args.as_mut_ptr(), size_of::<sys::sr_decode_args>()) };
    assert_eq!(status, sys::SR_OK);
    // SAFETY: zeroed fields are valid and the call wrote the defaults.
    let mut args = unsafe { args.assume_init() };
    let seq_ids = [seq.0];
    args.layer = 0;
    args.batch = 1;
    args.seq_ids = seq_ids.as_ptr();
    args.num_q_heads = SHAPE.q_heads() as i32;
    args.q = q_fp8.as_ptr().cast();
    args.q_dtype = sys::SR_DTYPE_FP8_E4M3;
    args.out = out.as_mut_ptr().cast();
    args.out_dtype = sys::SR_DTYPE_F32;
    args.stream = null_mut();
    // SAFETY: live context and cache; q and out hold one sequence's q-heads.
    let status = unsafe { sys::sr_decode_step(context.as_raw(), cache.as_raw(), &args) };
    assert_eq!(status, sys::SR_ERR_UNSUPPORTED, "q_dtype = FP8 was not refused as unsupported");
    assert!(out.iter().all(|x| x.is_nan()), "a refused decode wrote its output");
}
