//! K/V written with append come back unchanged through read (or rounded as the dtypes say).
mod support;

use sinkrouter::{Bf16Bits, Dtype, F16Bits, KvCache, KvCacheOptions};
use support::sink_context::{diffuse, Rng, Shape};
use support::{add_sequence_with, cache, cpu_context};

const SHAPE: Shape = Shape { kv_heads: 2, group: 1, head_dim: 64, tokens: 250 };

#[test]
fn f32_cache_returns_exactly_what_was_appended() {
    let context = cpu_context();
    let cache = cache(&context, SHAPE.kv_heads, SHAPE.head_dim, 1024, Dtype::F32);
    let data = diffuse(SHAPE, 1);
    let seq = add_sequence_with(&cache, &data.k, &data.v);
    assert_eq!(cache.length(seq, 0).unwrap(), SHAPE.tokens as i64);

    let (k, v) = cache.read_vec::<f32>(seq, 0, 0, SHAPE.tokens).unwrap();
    assert_eq!(k, data.k);
    assert_eq!(v, data.v);

    // A range that starts and ends inside pages, and only one of K and V.
    let (first, n, row) = (37usize, 101usize, SHAPE.token_elements());
    let mut v_part = vec![f32::NAN; n * row];
    cache.read::<f32>(seq, 0, first as i64, None, Some(&mut v_part)).unwrap();
    assert_eq!(v_part, data.v[first * row..(first + n) * row]);
}

#[test]
fn f32_input_into_a_bf16_cache_rounds_to_nearest_even() {
    let context = cpu_context();
    let cache = cache(&context, SHAPE.kv_heads, SHAPE.head_dim, 1024, Dtype::Bf16);
    let mut data = diffuse(SHAPE, 2);
    // Ties, both ways, and values that round up across the exponent.
    data.k[0] = f32::from_bits(0x3f80_8000); // tie, even below: stays 0x3f80
    data.k[1] = f32::from_bits(0x3f81_8000); // tie, odd below: rounds up to 0x3f82
    data.k[2] = f32::from_bits(0x3fff_ffff); // rounds up to 2.0
    let seq = add_sequence_with(&cache, &data.k, &data.v);

    let (k_bits, v_bits) = cache.read_vec::<Bf16Bits>(seq, 0, 0, SHAPE.tokens).unwrap();
    let expected_k: Vec<Bf16Bits> = data.k.iter().map(|&x| Bf16Bits::from_f32(x)).collect();
    let expected_v: Vec<Bf16Bits> = data.v.iter().map(|&x| Bf16Bits::from_f32(x)).collect();
    assert_eq!(&k_bits[..3], &[Bf16Bits(0x3f80), Bf16Bits(0x3f82), Bf16Bits(0x4000)]);
    assert_eq!(k_bits, expected_k);
    assert_eq!(v_bits, expected_v);

    // Reading as f32 widens the stored bf16 exactly.
    let (k_f32, _) = cache.read_vec::<f32>(seq, 0, 0, SHAPE.tokens).unwrap();
    assert_eq!(k_f32, expected_k.iter().map(|b| b.to_f32()).collect::<Vec<_>>());
}

#[test]
fn sixteen_bit_elements_round_trip_bit_for_bit() {
    let context = cpu_context();
    let mut rng = Rng::new(3);
    let n = SHAPE.tokens * SHAPE.token_elements();
    // Finite f16 patterns (bit 14 clear: exponent below 0x10): conversion may not touch them.
    let f16: Vec<F16Bits> = (0..n).map(|_| F16Bits((rng.next_u64() as u16) & 0xbbff)).collect();
    let bf16: Vec<Bf16Bits> = (0..n).map(|_| Bf16Bits::from_f32(rng.normal() as f32)).collect();

    let f16_cache = cache(&context, SHAPE.kv_heads, SHAPE.head_dim, 1024, Dtype::F16);
    let seq = f16_cache.add_sequence().unwrap();
    f16_cache.append(seq, 0, &f16, &f16).unwrap();
    let (k, v) = f16_cache.read_vec::<F16Bits>(seq, 0, 0, SHAPE.tokens).unwrap();
    assert_eq!(k, f16);
    assert_eq!(v, f16);

    let bf16_cache = cache(&context, SHAPE.kv_heads, SHAPE.head_dim, 1024, Dtype::Bf16);
    let seq = bf16_cache.add_sequence().unwrap();
    bf16_cache.append(seq, 0, &bf16, &bf16).unwrap();
    let (k, _) = bf16_cache.read_vec::<Bf16Bits>(seq, 0, 0, SHAPE.tokens).unwrap();
    assert_eq!(k, bf16);
}

#[test]
fn layers_fill_independently_and_truncate_cuts_every_layer() {
    let context = cpu_context();
    let options = KvCacheOptions { head_dim: 64, dtype: Dtype::F32, ..KvCacheOptions::new(2, 2, 1024).unwrap() };
    let cache = KvCache::new(&context, &options).unwrap();
    let data = diffuse(SHAPE, 4);
    let seq = cache.add_sequence().unwrap();
    cache.append(seq, 0, &data.k, &data.v).unwrap();
    assert_eq!(cache.length(seq, 0).unwrap(), SHAPE.tokens as i64);
    assert_eq!(cache.length(seq, 1).unwrap(), 0);

    let row = SHAPE.token_elements();
    cache.append(seq, 1, &data.k[..10 * row], &data.v[..10 * row]).unwrap();
    cache.truncate(seq, 5).unwrap();
    assert_eq!(cache.length(seq, 0).unwrap(), 5);
    assert_eq!(cache.length(seq, 1).unwrap(), 5);
    let (k, _) = cache.read_vec::<f32>(seq, 0, 0, 5).unwrap();
    assert_eq!(k, data.k[..5 * row]);
}
