//! The recorded series and how each is squeezed into 16 bits.

/// A scalar series (cores come after these, one each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Cpu,
    Memory,
    Swap,
    Temperature,
    Load1,
    NetRecv,
    NetSent,
    DiskRead,
    DiskWrite,
    RootDisk,
    Clients,
    WifiSignal,
}

/// Every scalar series, in storage order (the order is part of the file format).
pub const SCALAR_SERIES: [Series; 12] = [
    Series::Cpu,
    Series::Memory,
    Series::Swap,
    Series::Temperature,
    Series::Load1,
    Series::NetRecv,
    Series::NetSent,
    Series::DiskRead,
    Series::DiskWrite,
    Series::RootDisk,
    Series::Clients,
    Series::WifiSignal,
];

/// The code of "not known".
pub(crate) const MISSING: u16 = u16::MAX;

/// Fixed point covers a known range at a fixed step; rates span bytes to gigabytes and need a
/// float. 16 bits halve the RAM of `f32` and are well below what a chart can show.
#[derive(Debug, Clone, Copy)]
enum Codec {
    /// `value = offset + code × step`, codes 0 ..= 65534.
    Fixed {
        offset: f64,
        step: f64,
        decimals: i32,
    },
    /// bfloat16: the top 16 bits of an `f32` (8-bit exponent, 7-bit mantissa, ≤ 0.4 % error).
    Half,
}

const PERCENT: Codec = Codec::Fixed {
    offset: 0.0,
    step: 0.01,
    decimals: 2,
};

impl Series {
    /// Key in the JSON points; the first ten match the 10-minute history's names.
    pub fn name(self) -> &'static str {
        match self {
            Series::Cpu => "cpu",
            Series::Memory => "mem",
            Series::Swap => "swap",
            Series::Temperature => "temp",
            Series::Load1 => "load1",
            Series::NetRecv => "net_recv",
            Series::NetSent => "net_sent",
            Series::DiskRead => "disk_read",
            Series::DiskWrite => "disk_write",
            Series::RootDisk => "disk_root",
            Series::Clients => "clients",
            Series::WifiSignal => "wifi_signal",
        }
    }

    fn codec(self) -> Codec {
        match self {
            Series::Cpu | Series::Memory | Series::Swap | Series::RootDisk => PERCENT,
            // −100 ..= 555 °C.
            Series::Temperature => Codec::Fixed {
                offset: -100.0,
                step: 0.01,
                decimals: 2,
            },
            Series::Load1 => PERCENT,
            Series::NetRecv | Series::NetSent | Series::DiskRead | Series::DiskWrite => Codec::Half,
            // 0 ..= 6553.4 clients (a mean, so not whole).
            Series::Clients => Codec::Fixed {
                offset: 0.0,
                step: 0.1,
                decimals: 1,
            },
            // dBm (−100 ..= 0) or percent: −200 ..= 455.
            Series::WifiSignal => Codec::Fixed {
                offset: -200.0,
                step: 0.01,
                decimals: 2,
            },
        }
    }

    /// Series of storage column `index` (cores use the CPU's codec).
    pub(crate) fn of_column(index: usize) -> Series {
        SCALAR_SERIES.get(index).copied().unwrap_or(Series::Cpu)
    }

    pub(crate) fn encode(self, v: f64) -> u16 {
        if !v.is_finite() {
            return MISSING;
        }
        match self.codec() {
            Codec::Fixed { offset, step, .. } => ((v - offset) / step)
                .round()
                .clamp(0.0, f64::from(MISSING - 1))
                as u16,
            Codec::Half => {
                let bits = (v as f32).to_bits();
                // Round to nearest, ties to even; finite inputs stay finite below f32::MAX.
                let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
                let code = (rounded >> 16) as u16;
                if code == MISSING || f32::from_bits(u32::from(code) << 16).is_nan() {
                    0
                } else {
                    code
                }
            }
        }
    }

    pub(crate) fn decode(self, code: u16) -> f32 {
        if code == MISSING {
            return f32::NAN;
        }
        match self.codec() {
            Codec::Fixed { offset, step, .. } => (offset + f64::from(code) * step) as f32,
            Codec::Half => f32::from_bits(u32::from(code) << 16),
        }
    }

    /// A value as the JSON shows it: fixed-point series rounded to their step, so that `12.34`
    /// does not come out as `12.340000152587891`.
    pub(crate) fn round_for_output(self, v: f32) -> Out {
        match self.codec() {
            Codec::Fixed { decimals, .. } => {
                let scale = 10f64.powi(decimals);
                Out::Fixed((f64::from(v) * scale).round() / scale)
            }
            // serde_json writes the shortest decimal that reads back as the same f32.
            Codec::Half => Out::Float(v),
        }
    }
}

/// Throttle flags in one byte: bit 7 = known, bits 0–3 = `get_throttled` bits 0–3 (under-voltage,
/// frequency capped, throttled, soft temperature limit). ORing two such bytes merges buckets.
pub(crate) fn throttle_bits(raw: u32) -> u8 {
    0x80 | (raw & 0x0f) as u8
}

pub(crate) fn merge_flags(a: u8, b: u8) -> u8 {
    a | b
}

pub(crate) fn flags_out(f: u8) -> Option<u8> {
    (f & 0x80 != 0).then_some(f & 0x0f)
}

/// A value ready for JSON.
pub(crate) enum Out {
    Fixed(f64),
    Float(f32),
}

impl serde::Serialize for Out {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Out::Fixed(v) => serializer.serialize_f64(v),
            Out::Float(v) => serializer.serialize_f32(v),
        }
    }
}
