use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

/// A whole minute in unix seconds, so that bucket edges are easy to reason about.
const T0: u64 = 1_700_000_040;

fn at(mono_s: u64, wall_s: u64) -> Sample {
    Sample::new(
        Duration::from_secs(mono_s),
        UNIX_EPOCH + Duration::from_secs(wall_s),
    )
}

fn small() -> HistoryConfig {
    HistoryConfig {
        interval: Duration::from_secs(1),
        raw_keep: Duration::from_secs(600),
        fine: TierConfig {
            bucket: Duration::from_secs(60),
            keep: Duration::from_secs(3 * 3600),
        },
        coarse: TierConfig {
            bucket: Duration::from_secs(900),
            keep: Duration::from_secs(2 * 86_400),
        },
    }
}

#[test]
fn a_minute_of_samples_becomes_one_min_mean_max_point() {
    let mut h = History::new(HistoryConfig::default(), 2).unwrap();
    for i in 0..60 {
        let mut s = at(i, T0 + i);
        s.cpu = Some(i as f64);
        s.cores = vec![10.0, 90.0 - i as f64];
        s.temperature = Some(50.0 + (i % 2) as f64);
        h.push(&s);
    }
    // The first sample of the next minute seals the bucket.
    h.push(&at(60, T0 + 60));
    let view = h.query(Range::Day, 10_000);
    assert_eq!(view.len(), 2, "the sealed minute and the open one");
    assert_eq!(view.t(0), T0 * 1000);
    assert_eq!(view.get(0, Series::Cpu), Some([0.0, 29.5, 59.0]));
    assert_eq!(view.core(0, 0), Some([10.0, 10.0, 10.0]));
    assert_eq!(view.core(0, 1), Some([31.0, 60.5, 90.0]));
    assert_eq!(view.get(0, Series::Temperature), Some([50.0, 50.5, 51.0]));
    assert_eq!(view.get(0, Series::Memory), None, "never known");
    assert_eq!(
        view.get(1, Series::Cpu),
        None,
        "the open minute has no CPU value"
    );
    assert_eq!(view.throttled(0), None, "not a Pi");
}

#[test]
fn raw_points_keep_every_sample_in_order() {
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    for i in 0..120 {
        let mut s = at(i, T0 + i);
        s.memory = Some(40.0 + i as f64 / 100.0);
        h.push(&s);
    }
    let view = h.query(Range::TenMinutes, 10_000);
    assert_eq!(view.len(), 120);
    for i in 0..120 {
        assert_eq!(view.t(i), (T0 + i as u64) * 1000);
        let v = view.get(i, Series::Memory).unwrap();
        assert!((v[1] - (40.0 + i as f32 / 100.0)).abs() < 0.006, "{v:?}");
        assert_eq!(v[0], v[2]);
    }
}

#[test]
fn throttle_flags_mean_any_time_set_in_the_bucket() {
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    for i in 0..120 {
        let mut s = at(i, T0 + i);
        // Under-voltage for one second of the first minute; the sticky bits are not history.
        s.throttled = Some(if i == 30 { 0x50001 } else { 0x50000 });
        h.push(&s);
    }
    let view = h.query(Range::Day, 100);
    assert_eq!(view.len(), 2);
    assert_eq!(view.throttled(0), Some(1));
    assert_eq!(view.throttled(1), Some(0));
}

#[test]
fn a_backward_wall_step_keeps_the_window_and_the_order() {
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    // 5 minutes, then the wall clock steps back an hour (NTP after fake-hwclock), 5 more.
    for i in 0..600 {
        let wall = if i < 300 { T0 + i } else { T0 + i - 3600 };
        let mut s = at(1000 + i, wall);
        s.cpu = Some(i as f64 / 10.0);
        h.push(&s);
    }
    let view = h.query(Range::TenMinutes, 10_000);
    assert_eq!(view.len(), 600, "no point lost or hidden by the step");
    for i in 1..view.len() {
        assert!(view.t(i) > view.t(i - 1), "times go forward at {i}");
        let prev = view.get(i - 1, Series::Cpu).unwrap()[1];
        assert!(
            view.get(i, Series::Cpu).unwrap()[1] > prev,
            "order kept at {i}"
        );
    }
    // Shown on the current clock: the newest point is now, the oldest ten minutes before.
    assert_eq!(view.t(599), (T0 + 599 - 3600) * 1000);
    assert_eq!(view.t(0), (T0 - 3600) * 1000);
    // The minute tier still holds ten consecutive minutes, not a mix sorted by a wrong clock.
    let minutes = h.query(Range::Day, 10_000);
    assert_eq!(minutes.len(), 10);
    for i in 1..minutes.len() {
        assert_eq!(minutes.t(i) - minutes.t(i - 1), 60_000);
    }
}

#[test]
fn a_forward_wall_step_does_not_empty_the_window() {
    let mut h = History::new(small(), 0).unwrap();
    for i in 0..600 {
        let wall = if i < 300 { T0 + i } else { T0 + i + 3600 };
        let mut s = at(i, wall);
        s.cpu = Some(1.0);
        h.push(&s);
    }
    let view = h.query(Range::TenMinutes, 10_000);
    assert_eq!(view.len(), 600);
    assert_eq!(view.t(599), (T0 + 599 + 3600) * 1000);
    assert_eq!(
        view.t(599) - view.t(0),
        599_000,
        "spacing from the monotonic clock"
    );
}

#[test]
fn ranges_pick_their_tier_and_older_data_comes_from_coarser_tiers() {
    let mut h = History::new(small(), 0).unwrap();
    // Four hours at 1 Hz: raw keeps 10 minutes, fine 3 hours, coarse all.
    let n = 4 * 3600;
    for i in 0..n {
        let mut s = at(i, T0 + i);
        s.load1 = Some(1.0);
        h.push(&s);
    }
    let ten = h.query(Range::TenMinutes, 100_000);
    assert_eq!(ten.resolution_ms, 1000);
    assert_eq!(ten.len(), 601, "ten minutes inclusive, at 1 s");
    let hour = h.query(Range::Hour, 100_000);
    assert_eq!(
        hour.resolution_ms, 60_000,
        "raw keeps only 10 min here: next tier answers"
    );
    let day = h.query(Range::Day, 100_000);
    assert_eq!(
        day.resolution_ms, 900_000,
        "fine keeps 3 h: coarse answers a day"
    );
    // The quarter that holds the first sample starts 14 minutes before it.
    assert_eq!(
        day.t(0),
        (T0 - 840) * 1000,
        "reaches back to the first sample"
    );
    assert_eq!(day.len(), 16 + 1, "sixteen quarters and the open one");
}

#[test]
fn hour_after_a_restart_is_filled_from_the_minute_tier() {
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    for i in 0..7200 {
        let mut s = at(i, T0 + i);
        s.cpu = Some(5.0);
        h.push(&s);
    }
    // What a restore gives: no raw points, the same aggregates (simulated by a raw-less config).
    let raw_less = HistoryConfig {
        raw_keep: Duration::from_secs(60),
        ..HistoryConfig::default()
    };
    let mut h2 = History::new(raw_less, 0).unwrap();
    for i in 0..7200 {
        let mut s = at(i, T0 + i);
        s.cpu = Some(5.0);
        h2.push(&s);
    }
    let full = h.query(Range::Hour, 100_000);
    let patched = h2.query(Range::Hour, 100_000);
    assert_eq!(full.t(0), (T0 + 7199 - 3600) * 1000);
    assert!(
        full.t(0) - patched.t(0) < 60_000,
        "the minute that holds the window's start"
    );
    assert!(
        patched.len() > 60 && patched.len() < 130,
        "{}",
        patched.len()
    );
    assert_eq!(patched.get(0, Series::Cpu), Some([5.0, 5.0, 5.0]));
}

#[test]
fn many_points_are_merged_keeping_extremes() {
    let mut h = History::new(small(), 0).unwrap();
    for i in 0..600 {
        let mut s = at(i, T0 + i);
        s.cpu = Some(if i == 333 { 99.0 } else { 10.0 });
        h.push(&s);
    }
    let view = h.query(Range::TenMinutes, 50);
    assert_eq!(view.len(), 50);
    assert_eq!(view.resolution_ms, 12_000);
    let maxes: Vec<f32> = (0..50)
        .map(|i| view.get(i, Series::Cpu).unwrap()[2])
        .collect();
    assert_eq!(maxes.iter().filter(|m| **m == 99.0).count(), 1);
    assert_eq!(
        view.t(49),
        (T0 + 599) * 1000,
        "the right edge stays the newest point"
    );
}

/// Checks `merged` against the unmerged `full` answer of the same query: every merged point is
/// the aligned stretch of `resolution_ms` it claims, with the exact min of the mins and max of
/// the maxes, the mean weighted by the time each row covers, and the OR of the flags.
fn assert_merged_from(full: &HistoryView, merged: &HistoryView, max: usize) {
    let w = merged.resolution_ms;
    assert!(merged.len() <= max, "{} > {max}", merged.len());
    assert_eq!(w % full.resolution_ms, 0, "a multiple of the resolution");
    // One point holds everything; more are aligned stretches of `w`.
    let stretch = if max == 1 { u64::MAX } else { w };
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for j in 0..full.len() {
        match groups.last_mut() {
            Some(g) if full.timeline[g.0] / stretch == full.timeline[j] / stretch => g.1 = j + 1,
            _ => groups.push((j, j + 1)),
        }
    }
    assert_eq!(merged.len(), groups.len());
    for (i, &(a, b)) in groups.iter().enumerate() {
        assert_eq!(merged.t(i), full.t(b - 1), "sits at its newest row");
        let flags = (a..b).fold(0, |f, j| f | full.flags[j]);
        assert_eq!(merged.flags[i], flags);
        for s in 0..full.width {
            let known: Vec<usize> = (a..b).filter(|&j| full.triple(j, s).is_some()).collect();
            let Some(got) = merged.triple(i, s) else {
                assert!(known.is_empty(), "point {i} series {s} lost its values");
                continue;
            };
            let lo = known
                .iter()
                .map(|&j| full.triple(j, s).unwrap()[0])
                .fold(f32::INFINITY, f32::min);
            let hi = known
                .iter()
                .map(|&j| full.triple(j, s).unwrap()[2])
                .fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(
                (got[0], got[2]),
                (lo, hi),
                "point {i} series {s}: exact extremes"
            );
            let total: f64 = known.iter().map(|&j| f64::from(full.weights[j])).sum();
            let mean = known
                .iter()
                .map(|&j| f64::from(full.triple(j, s).unwrap()[1]) * f64::from(full.weights[j]))
                .sum::<f64>()
                / total;
            assert!(
                (f64::from(got[1]) - mean).abs() <= 1e-4 * mean.abs().max(1.0),
                "point {i} series {s}: mean {} ≠ {mean}",
                got[1]
            );
        }
    }
}

#[test]
fn merged_points_keep_exact_extremes_weighted_means_and_any_flag() {
    let mut h = History::new(small(), 2).unwrap();
    let mut seed = 7u64;
    let mut noise = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    // Two days at 2 s with gaps in series, spikes and throttling now and then.
    for i in 0..86_400 {
        let mut s = at(2 * i, T0 + 2 * i);
        s.cpu = Some(if i % 9_973 == 0 {
            100.0
        } else {
            30.0 * noise()
        });
        s.cores = vec![100.0 * noise(), 5.0];
        s.temperature = (i % 3_000 > 700).then(|| 40.0 + 20.0 * noise());
        s.net_recv = Some(1e7 * noise() * noise());
        s.throttled = Some(if i % 4_001 == 0 { 0x50004 } else { 0x50000 });
        h.push(&s);
    }
    for range in Range::ALL {
        let full = h.query(range, usize::MAX);
        for max in [1, 2, 7, 100, 412, 1500] {
            let merged = h.query(range, max);
            if full.len() <= max {
                assert_eq!(
                    merged.len(),
                    full.len(),
                    "{range} ≤ {max}: nothing to merge"
                );
                continue;
            }
            assert!(
                merged.len() * 2 > max.min(full.len()),
                "{range} ≤ {max}: {} points",
                merged.len()
            );
            assert_merged_from(&full, &merged, max);
        }
    }
}

#[test]
fn rows_of_different_lengths_count_by_the_time_they_cover() {
    // After a restart the hour is one-minute buckets (restored) and then raw seconds: 59
    // minutes at 10 % and one minute of seconds at 70 % are 11 % on average, not 40 % (the
    // mean of 119 rows).
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    for i in 0..3540 {
        let mut s = at(i, T0 + i);
        s.cpu = Some(10.0);
        h.push(&s);
    }
    let mut events = crate::events::EventLog::new(10);
    let saved = store::encode(
        &h,
        &events,
        None,
        UNIX_EPOCH + Duration::from_secs(T0 + 3540),
    );
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    store::decode(&saved, &mut h, &mut events).unwrap();
    for i in 3540..3600 {
        let mut s = at(i - 3540, T0 + i);
        s.cpu = Some(70.0);
        h.push(&s);
    }
    let full = h.query(Range::Hour, usize::MAX);
    assert_eq!(full.len(), 59 + 60, "restored minutes, then raw seconds");
    let one = h.query(Range::Hour, 1);
    let [lo, mean, hi] = one.get(0, Series::Cpu).unwrap();
    assert_eq!((lo, hi), (10.0, 70.0));
    assert!((mean - 11.0).abs() < 1e-3, "{mean}");
    for max in [1, 31, 100] {
        assert_merged_from(&full, &h.query(Range::Hour, max), max);
    }
}

#[test]
fn few_points_fit_however_the_stretches_fall() {
    // Points that start and end off any stretch's edge: one or two points are still one or two,
    // and the answer comes at once (no search for an edge that fits).
    for offset in [0, 1, 7, 37, 59] {
        let mut h = History::new(HistoryConfig::default(), 0).unwrap();
        for i in 0..7_000 {
            let mut s = at(i, T0 + offset + i);
            s.cpu = Some((i % 100) as f64);
            h.push(&s);
        }
        for range in [Range::TenMinutes, Range::Hour, Range::Day] {
            let full = h.query(range, usize::MAX);
            for max in [1, 2, 3, 5] {
                let merged = h.query(range, max);
                assert_merged_from(&full, &merged, max);
                assert!(!merged.is_empty(), "{range} ≤ {max}");
            }
            let one = h.query(range, 1);
            assert_eq!(
                one.get(0, Series::Cpu).map(|v| (v[0], v[2])),
                Some((0.0, 99.0))
            );
        }
    }
}

#[test]
fn an_open_bucket_counts_for_the_ticks_it_holds() {
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    // A full minute at 0 %, then three seconds of the next at 100 %.
    for i in 0..63 {
        let mut s = at(i, T0 + i);
        s.cpu = Some(if i < 60 { 0.0 } else { 100.0 });
        h.push(&s);
    }
    let merged = h.query(Range::Day, 1);
    assert_eq!(merged.len(), 1);
    let [lo, mean, hi] = merged.get(0, Series::Cpu).unwrap();
    assert_eq!((lo, hi), (0.0, 100.0));
    assert!((mean - 100.0 * 3.0 / 63.0).abs() < 1e-3, "{mean}");
}

#[test]
fn merged_points_stay_put_as_time_goes_on() {
    // A refresh a few minutes later merges the same minutes into the same points: only the
    // newest changes, and the chart does not shimmer.
    let mut h = History::new(HistoryConfig::default(), 0).unwrap();
    let mut seed = 11u64;
    let mut push = |h: &mut History, i: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let mut s = at(i, T0 + i);
        s.cpu = Some((seed >> 40) as f64 / (1u64 << 24) as f64 * 100.0);
        h.push(&s);
    };
    for i in 0..86_400 {
        push(&mut h, i);
    }
    let before = serde_json::to_value(h.query(Range::Day, 300)).unwrap();
    for i in 86_400..86_400 + 7 * 60 {
        push(&mut h, i);
    }
    let after = serde_json::to_value(h.query(Range::Day, 300)).unwrap();
    assert_eq!(before["resolution_ms"], 300_000);
    let (b, a) = (
        before["points"].as_array().unwrap(),
        after["points"].as_array().unwrap(),
    );
    // Seven minutes later the window moved by one or two stretches of five minutes.
    let shift = a
        .iter()
        .position(|p| p == &b[b.len() - 2])
        .expect("an old point kept");
    assert!(b.len() - 2 - shift <= 2, "moved by {}", b.len() - 2 - shift);
    // The window's first stretch is cut by its start: compare from the second one.
    let moved = b.len() - 2 - shift;
    assert_eq!(&a[1..shift + 1], &b[moved + 1..b.len() - 1]);
}

#[test]
fn json_has_t_and_min_mean_max_per_series() {
    let mut h = History::new(HistoryConfig::default(), 2).unwrap();
    let mut s = at(0, T0);
    s.cpu = Some(12.345);
    s.cores = vec![1.0, 2.0];
    s.net_recv = Some(1_234_567.0);
    s.wifi_signal = Some(-61.0);
    s.throttled = Some(0x4);
    h.push(&s);
    let json = serde_json::to_value(h.query(Range::Hour, 100)).unwrap();
    assert_eq!(json["range"], "1h");
    assert_eq!(json["resolution_ms"], 1000);
    let p = &json["points"][0];
    assert_eq!(p["t"], T0 * 1000);
    assert_eq!(p["cpu"], serde_json::json!([12.35, 12.35, 12.35]));
    assert_eq!(p["wifi_signal"], serde_json::json!([-61.0, -61.0, -61.0]));
    assert_eq!(p["mem"], serde_json::Value::Null);
    assert_eq!(
        p["per_core"],
        serde_json::json!([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    );
    assert_eq!(p["throttled"], 4);
    let rate = p["net_recv"][1].as_f64().unwrap();
    assert!((rate / 1_234_567.0 - 1.0).abs() < 0.004, "{rate}");
}

#[test]
fn codecs_round_trip_within_their_precision() {
    for (series, v, tolerance) in [
        (Series::Cpu, 0.0, 0.005),
        (Series::Cpu, 100.0, 0.005),
        (Series::Temperature, -12.34, 0.005),
        (Series::Temperature, 84.56, 0.005),
        (Series::Load1, 3.07, 0.005),
        (Series::Clients, 1000.0, 0.05),
        (Series::WifiSignal, -87.0, 0.005),
        (Series::DiskWrite, 0.0, 0.0),
        (Series::DiskWrite, 5.5e9, 5.5e9 * 0.004),
        (Series::NetRecv, 0.25, 0.001),
    ] {
        let back = f64::from(series.decode(series.encode(v)));
        assert!((back - v).abs() <= tolerance, "{series:?} {v} → {back}");
    }
    assert!(Series::Cpu.decode(Series::Cpu.encode(f64::NAN)).is_nan());
    assert_eq!(Series::Cpu.encode(-5.0), 0, "clamped, not wrapped");
    assert_eq!(
        Series::Cpu.encode(1e9),
        u16::MAX - 1,
        "clamped, never the missing code"
    );
    assert_ne!(Series::NetRecv.encode(f64::from(f32::MAX)), u16::MAX);
}

#[test]
fn config_bounds_are_checked() {
    let d = HistoryConfig::default();
    assert_eq!(d.validate(), Ok(()));
    let c = HistoryConfig {
        interval: Duration::from_millis(10),
        ..d
    };
    assert_eq!(c.validate(), Err(HistoryConfigError::Interval));
    let c = HistoryConfig {
        raw_keep: Duration::from_secs(2 * 86_400),
        ..d
    };
    assert_eq!(c.validate(), Err(HistoryConfigError::RawKeep));
    let c = HistoryConfig {
        fine: TierConfig {
            bucket: Duration::from_millis(500),
            ..d.fine
        },
        ..d
    };
    assert_eq!(
        c.validate(),
        Err(HistoryConfigError::Bucket { tier: "fine" })
    );
    let c = HistoryConfig {
        coarse: TierConfig {
            keep: Duration::from_secs(20 * 365 * 86_400),
            ..d.coarse
        },
        ..d
    };
    assert_eq!(
        c.validate(),
        Err(HistoryConfigError::Keep { tier: "coarse" })
    );
    let c = HistoryConfig {
        coarse: TierConfig {
            bucket: Duration::from_secs(30),
            keep: Duration::from_secs(86_400),
        },
        ..d
    };
    assert_eq!(c.validate(), Err(HistoryConfigError::Order));
    assert!(History::new(c, 4).is_err());
}

#[test]
fn ranges_parse_from_the_query_string() {
    for r in Range::ALL {
        assert_eq!(r.as_str().parse::<Range>(), Ok(r));
    }
    assert_eq!("2d".parse::<Range>(), Err(RangeError));
    assert_eq!(Range::Year.span(), Duration::from_secs(365 * 86_400));
}

#[test]
fn memory_is_allocated_once() {
    // Tiers of at most two blocks (512 rows) are plain rings, allocated at start.
    let config = HistoryConfig {
        raw_keep: Duration::from_secs(500),
        ..small()
    };
    let mut h = History::new(config, 4).unwrap();
    let before = h.heap_bytes();
    for i in 0..3 * 86_400 {
        let mut s = at(i, T0 + i);
        s.cpu = Some(1.0);
        h.push(&s);
    }
    assert_eq!(h.heap_bytes(), before, "rings never grow");
    // 12 scalar series + 4 cores: raw 501 × (8 + 1 + 32), fine 180 and coarse 192 × (8 + 1 + 96).
    let expected = 501 * 41 + (180 + 192) * 105 + 2 * 16 * std::mem::size_of::<tier::Acc>();
    assert_eq!(before, expected);
}

#[test]
fn compressed_tiers_answer_exactly_as_plain_ones() {
    // Fine: 3 h = 180 rows (plain); make both aggregate tiers long enough to compress.
    let config = HistoryConfig {
        fine: TierConfig {
            bucket: Duration::from_secs(60),
            keep: Duration::from_secs(20 * 3600),
        },
        coarse: TierConfig {
            bucket: Duration::from_secs(900),
            keep: Duration::from_secs(10 * 86_400),
        },
        ..small()
    };
    let mut packed = History::new(config, 3).unwrap();
    let mut plain = History::uncompressed(config, 3);
    // Its aggregate blocks in a file: from the start, and moved there half-way.
    let dir = tempfile::tempdir().unwrap();
    let mut shelved = History::new(config, 3).unwrap();
    shelved.shelve_in(dir.path()).unwrap();
    let mut shelved_later = History::new(config, 3).unwrap();
    let mut seed = 3u64;
    let mut noise = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut wall = T0;
    // 12 days at 5 s (every tier wraps), with a restart-like wall jump, gaps in series and a
    // wall step back.
    for i in 0..12 * 86_400 / 5 {
        wall += if i == 50_000 { 7 * 3600 } else { 5 };
        if i == 120_000 {
            wall -= 3 * 3600;
        }
        let mut s = at(i * 5 + if i > 50_000 { 7 * 3600 } else { 0 }, wall);
        s.cpu = Some(3.0 + 20.0 * noise() * noise());
        s.cores = vec![100.0 * noise(), 1.0, 50.0];
        s.memory = Some(40.0 + i as f64 / 10_000.0);
        s.temperature = (i % 1000 > 100).then(|| 45.0 + 5.0 * noise());
        s.net_recv = Some(1e6 * noise());
        s.wifi_signal = (i / 5000 % 2 == 0).then_some(-61.0);
        s.throttled = Some(if i % 7777 == 0 { 0x50005 } else { 0 });
        packed.push(&s);
        plain.push(&s);
        shelved.push(&s);
        shelved_later.push(&s);
        if i == 100_000 {
            shelved_later.shelve_in(dir.path()).unwrap();
        }
    }
    assert!(
        packed.tiers()[2].len() > 2 * block::BLOCK_ROWS,
        "the coarse tier compressed"
    );
    assert!(
        packed.tiers()[0].len() > 2 * block::BLOCK_ROWS,
        "the raw tier compressed"
    );
    for range in Range::ALL {
        for max in [100, 100_000] {
            let b = serde_json::to_string(&plain.query(range, max)).unwrap();
            for (name, h) in [
                ("compressed", &packed),
                ("shelved", &shelved),
                ("shelved later", &shelved_later),
            ] {
                let a = serde_json::to_string(&h.query(range, max)).unwrap();
                assert!(a == b, "{name}: {range} ≤ {max} points differ");
            }
        }
    }
    let now = UNIX_EPOCH + Duration::from_secs(wall);
    let events = crate::events::EventLog::new(10);
    let file = store::encode(&plain, &events, None, now);
    for h in [&packed, &shelved, &shelved_later] {
        assert!(
            store::encode(h, &events, None, now) == file,
            "the state file does not depend on how rows are held"
        );
    }
    // The shelved aggregate blocks are off the heap; the raw tier's stay.
    assert!(shelved.shelved_bytes() > 0);
    assert_eq!(shelved.shelved_bytes(), shelved_later.shelved_bytes());
    assert_eq!(
        shelved.heap_bytes() + shelved.shelved_bytes(),
        packed.heap_bytes()
    );
    assert!(shelved.tiers()[0].shelved_bytes() == 0);
    assert!(
        packed.heap_bytes() * 3 < plain.heap_bytes() * 2,
        "{} vs {} bytes",
        packed.heap_bytes(),
        plain.heap_bytes()
    );
}

#[test]
fn empty_history_answers_empty() {
    let h = History::new(HistoryConfig::default(), 4).unwrap();
    let view = h.query(Range::Year, 100);
    assert!(view.is_empty());
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["points"], serde_json::json!([]));
    let _ = SystemTime::now();
}

/// The block file this process holds open in `dir` (unnamed: `/proc/self/fd` links to it).
fn block_file_in(dir: &std::path::Path) -> std::fs::File {
    let prefix = format!("{}/", dir.to_str().unwrap());
    let fd = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path()).is_ok_and(|target| {
                let target = target.to_string_lossy().into_owned();
                target.starts_with(&prefix) && target.ends_with("(deleted)")
            })
        })
        .expect("an unnamed file open in the state directory");
    std::fs::OpenOptions::new()
        .write(true)
        .open(fd.path())
        .unwrap()
}

#[test]
fn a_damaged_block_file_leaves_those_rows_out_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = HistoryConfig {
        fine: TierConfig {
            bucket: Duration::from_secs(60),
            keep: Duration::from_secs(30 * 3600),
        },
        ..small()
    };
    let mut h = History::new(config, 1).unwrap();
    h.shelve_in(dir.path()).unwrap();
    // Nothing named appears in the state directory.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Two days at 10 s: the 1-minute tier (30 h) seals 256-row blocks and drops them.
    for i in 0..2 * 86_400 / 10 {
        let mut s = at(i * 10, T0 + i * 10);
        s.cpu = Some((i % 100) as f64);
        h.push(&s);
    }
    assert!(h.shelved_bytes() > 0);
    let whole = h.query(Range::Day, 100_000).len();
    let now = UNIX_EPOCH + Duration::from_secs(T0 + 2 * 86_400);
    let events = crate::events::EventLog::new(10);
    let saved = store::encode(&h, &events, None, now);

    use std::os::unix::fs::FileExt;
    let file = block_file_in(dir.path());
    let len = file.metadata().unwrap().len();
    file.write_all_at(&vec![0xa5; len as usize], 0).unwrap();
    drop(file);
    // Queries still answer, from what can be read: the open rows and the ring, not the blocks.
    let after = h.query(Range::Day, 100_000).len();
    assert!(after > 0 && after < whole, "{after} of {whole}");
    assert_eq!(h.query(Range::Day, 100_000).len(), after);
    // Saves leave the same rows out, and what they write still loads: its 1-minute rows are
    // those still shown, and the 15-minute tier answers for the time before them.
    let damaged = store::encode(&h, &events, None, now);
    assert!(damaged.len() < saved.len());
    let mut back = History::new(config, 1).unwrap();
    let mut log = crate::events::EventLog::new(10);
    store::decode(&damaged, &mut back, &mut log).unwrap();
    let mut readable = 0;
    h.tiers()[1].for_each_row_after(None, |_, _, _| readable += 1);
    assert_eq!(back.tiers()[1].len(), readable);
    assert_eq!(back.tiers()[1].newest(), h.tiers()[1].newest());
    assert!(back.query(Range::Day, 100_000).len() > after);
    // New rows keep coming in (ten hours: 600 1-minute rows, sealed into new blocks in the
    // same file) and are shown.
    for i in 2 * 86_400 / 10..2 * 86_400 / 10 + 3600 {
        let mut s = at(i * 10, T0 + i * 10);
        s.cpu = Some(1.0);
        h.push(&s);
    }
    assert!(h.query(Range::Day, 100_000).len() >= after + 600);
}
