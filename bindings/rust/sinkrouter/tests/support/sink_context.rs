//! Synthetic decode inputs, shared by the tests and the demo (which includes this file by path).
//!
//! Sink-structured: for each kv-head a unit direction u; the queries of its q-heads are
//! sqrt(head_dim) * u plus a little noise, so with scale 1/sqrt(head_dim) a key a*u + noise
//! gives a logit near a. Token 0 (the sink) has logit 0, the largest, and a small value; the
//! last 64 tokens sit near -5; every other token at -15 + 3 * min(N(0,1), 1.5), far enough
//! below the sink that routing skips most of their V blocks. Diffuse: Gaussian keys and
//! queries, where routing finds nothing to skip.

/// Splitmix64 with Box-Muller normals: small, seeded, and good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// Uniform in (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Shape of a decode context.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub kv_heads: usize,
    /// q-heads per kv-head.
    pub group: usize,
    pub head_dim: usize,
    pub tokens: usize,
}

impl Shape {
    pub fn q_heads(&self) -> usize {
        self.kv_heads * self.group
    }

    /// Elements of one token's K (or V): kv_heads * head_dim.
    pub fn token_elements(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// K and V as [tokens][kv_heads][head_dim] and one decode query as [q_heads][head_dim], f32.
pub struct Context {
    pub shape: Shape,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub q: Vec<f32>,
}

const WINDOW: usize = 64;

pub fn sink_structured(shape: Shape, seed: u64) -> Context {
    let Shape { kv_heads, group, head_dim: d, tokens } = shape;
    let mut rng = Rng::new(seed);
    let sqrt_d = (d as f64).sqrt();
    let directions: Vec<Vec<f64>> = (0..kv_heads)
        .map(|_| {
            let raw: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
            let norm = raw.iter().map(|x| x * x).sum::<f64>().sqrt();
            raw.into_iter().map(|x| x / norm).collect()
        })
        .collect();
    let mut k = vec![0f32; tokens * kv_heads * d];
    let mut v = vec![0f32; tokens * kv_heads * d];
    for t in 0..tokens {
        for (h, u) in directions.iter().enumerate() {
            let logit = if t == 0 {
                0.0
            } else if t + WINDOW >= tokens {
                -5.0 + 0.5 * rng.normal()
            } else {
                -15.0 + 3.0 * rng.normal().min(1.5)
            };
            let value_scale = if t == 0 { 0.05 } else { 1.0 };
            let row = (t * kv_heads + h) * d;
            for i in 0..d {
                k[row + i] = (logit * u[i] + 0.35 / sqrt_d * rng.normal()) as f32;
                v[row + i] = (value_scale * rng.normal()) as f32;
            }
        }
    }
    let mut q = vec![0f32; kv_heads * group * d];
    for (h, u) in directions.iter().enumerate() {
        for g in 0..group {
            let row = (h * group + g) * d;
            for i in 0..d {
                q[row + i] = (sqrt_d * u[i] + 0.1 * rng.normal()) as f32;
            }
        }
    }
    Context { shape, k, v, q }
}

pub fn diffuse(shape: Shape, seed: u64) -> Context {
    let mut rng = Rng::new(seed);
    let mut gaussians = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
    let kv = shape.tokens * shape.token_elements();
    Context { shape, k: gaussians(kv), v: gaussians(kv), q: gaussians(shape.q_heads() * shape.head_dim) }
}
