//! Allowed-domains matching and URL normalization (SPEC section 11: matching stays fast with
//! 10,000 patterns because it is compiled once, not scanned).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use tollgate::domains::addr::AddressPolicy;
use tollgate::domains::{AllowList, Pattern, Target};

fn allow_list(n: usize) -> AllowList {
    let policy = AddressPolicy::default();
    AllowList::build((0..n).map(|i| {
        let text = if i % 2 == 0 {
            format!("https://api{i}.example{}.com/v1/*", i % 97)
        } else {
            format!("https://*.tenant{i}.example.net/*")
        };
        (i, Pattern::parse(&text, false, &policy).expect("bench pattern"))
    }))
    .expect("bench allow list")
}

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("allowed_domains");
    for n in [10usize, 1_000, 10_000] {
        let list = allow_list(n);
        let hit = Target::parse(&format!("https://a.b.tenant{}.example.net/x/y", n - 1)).expect("target");
        let miss = Target::parse("https://nowhere.example.org/x").expect("target");
        group.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, t| b.iter(|| list.covering(black_box(t)).len()));
        group.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, t| b.iter(|| list.covering(black_box(t)).len()));
    }
    group.finish();
}

fn normalization(c: &mut Criterion) {
    c.bench_function("normalize_url", |b| {
        b.iter(|| {
            Target::parse(black_box("https://Abc123.Databricks.com./api/2.0/./sql/%7Estatements/../q?warehouse_id=w1"))
        })
    });
}

criterion_group!(benches, matching, normalization);
criterion_main!(benches);
