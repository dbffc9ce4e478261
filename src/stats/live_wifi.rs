//! The watched interface's state, with the kernel's Wi-Fi figures of this tick.
//!
//! The Wi-Fi signal moves every second, but neither network source follows it in dBm:
//! NetworkManager reports only a percentage, and the kernel fallback reads
//! `/proc/net/wireless` when the link changes. Each document therefore takes the kernel's
//! figures for the watched wireless interface as they are now (one `pread`, only while it is
//! wireless); NetworkManager's own quality figure is kept.
//!
//! The state is shared by the documents (an `Arc`) until the network watch changes it. A
//! document whose figures differ from it gets a copy, and copies are reused: the last one while
//! the figures stay the same, else one that no document holds any more, refilled with
//! `clone_from`. A signal that moves every second then costs no allocation.

use std::path::Path;
use std::sync::Arc;

use super::model::Connectivity;
use super::procfs::KeptFile;

pub struct LiveWifi {
    /// `PROC/net/wireless`, kept open.
    wireless: KeptFile,
    /// The state the last copy was made from, and that copy.
    last: Option<(Arc<Connectivity>, Arc<Connectivity>)>,
    /// A copy that no document holds any more, to refill.
    spare: Option<Arc<Connectivity>>,
}

impl LiveWifi {
    pub fn new(proc_root: &Path) -> LiveWifi {
        LiveWifi {
            wireless: KeptFile::records(proc_root.join("net/wireless")),
            last: None,
            spare: None,
        }
    }

    /// `state` with the kernel's figures of this tick: `state` itself when they are its own
    /// or it is not wireless, else a copy. `recycled` is the state an earlier document held;
    /// a copy that nobody else holds is kept for reuse.
    pub fn apply(
        &mut self,
        state: Arc<Connectivity>,
        recycled: Option<Arc<Connectivity>>,
    ) -> Arc<Connectivity> {
        if let Some(copy) = recycled.filter(unshared) {
            self.spare = Some(copy);
        }
        let Some(wifi) = &state.wifi else {
            return state;
        };
        let Some(kernel) = self
            .wireless
            .read_bytes()
            .and_then(|content| crate::netwatch::kernel_wifi(content, &state.interface))
        else {
            return state;
        };
        let signal_dbm = kernel.signal_dbm.or(wifi.signal_dbm);
        let quality_percent = if state.source == "kernel" || wifi.quality_percent.is_none() {
            kernel.quality_percent.or(wifi.quality_percent)
        } else {
            wifi.quality_percent
        };
        let figures = (signal_dbm, quality_percent);
        if figures == (wifi.signal_dbm, wifi.quality_percent) {
            return state;
        }
        if let Some((from, copy)) = &self.last {
            if Arc::ptr_eq(from, &state) && figures_of(copy) == Some(figures) {
                return copy.clone();
            }
        }
        let mut copy = match self.spare.take() {
            Some(mut spare) if unshared(&spare) => {
                Arc::get_mut(&mut spare)
                    .expect("unshared")
                    .clone_from(&state);
                spare
            }
            _ => Arc::new((*state).clone()),
        };
        let wifi = Arc::get_mut(&mut copy)
            .expect("not handed out yet")
            .wifi
            .as_mut()
            .expect("copied from a wireless state");
        wifi.signal_dbm = signal_dbm;
        wifi.quality_percent = quality_percent;
        self.last = Some((state, copy.clone()));
        copy
    }
}

fn figures_of(state: &Connectivity) -> Option<(Option<i32>, Option<u8>)> {
    state
        .wifi
        .as_ref()
        .map(|w| (w.signal_dbm, w.quality_percent))
}

fn unshared(state: &Arc<Connectivity>) -> bool {
    Arc::strong_count(state) == 1 && Arc::weak_count(state) == 0
}
