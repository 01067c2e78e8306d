//! How a committed batch's answers reach their callers: with one wake-up of the callers'
//! runtime, not one per caller.
//!
//! The writer thread used to answer each caller on its own channel. Each answer woke a task of
//! the callers' runtime, and where the writer shares a core with that runtime (one CPU, or
//! `serve` pinned to one) the woken thread took the core at once: it ran the one task woken,
//! found nothing else to do and went to sleep again, back to the writer for the next answer.
//! That was about one context switch per delivery, and about 10 % of `serve --inbox`'s CPU
//! (BENCHMARKS.md, twenty-fifth session).
//!
//! Now the writer posts the whole batch's answers here and wakes **one** waiting caller, which
//! hands every answer out from inside its runtime (waking tasks of the same thread costs no
//! system call). Every caller waits for its own answer *and* for a post, so any of them can
//! hand out; if none takes a post within [`HAND_OUT_AFTER`] (all stopped waiting, or their
//! runtime is not polling), the writer hands it out itself.

use std::sync::Mutex;
use std::time::Duration;

use hookguard_core::inbox::ClaimRef;
use tokio::sync::{oneshot, Notify};

use super::Done;

/// How long posted answers may wait for a caller to hand them out before the writer does.
pub(crate) const HAND_OUT_AFTER: Duration = Duration::from_millis(20);

/// The writer's answers, waiting to be handed out.
#[derive(Default)]
pub(crate) struct Mailbox {
    answers: Mutex<Vec<Done>>,
    posted: Notify,
    /// Items claimed for callers that had stopped waiting, found while handing out.
    unclaimed: Mutex<Vec<ClaimRef>>,
}

impl Mailbox {
    /// Posts a committed batch's answers and wakes one waiting caller to hand them out.
    pub(crate) fn post(&self, answers: Vec<Done>) {
        if answers.is_empty() {
            return;
        }
        lock(&self.answers).extend(answers);
        self.posted.notify_one();
    }

    /// Whether claims wait to be given back.
    pub(crate) fn holds_unclaimed(&self) -> bool {
        !lock(&self.unclaimed).is_empty()
    }

    /// Whether answers wait to be handed out.
    pub(crate) fn holds_answers(&self) -> bool {
        !lock(&self.answers).is_empty()
    }

    /// Answers every caller of what was posted so far.
    pub(crate) fn hand_out(&self) {
        // The answers stay locked until what they leave to give back is recorded: the writer,
        // finding neither answers nor give-backs in between, would wait for the next operation
        // before giving those claims back (up to their lease with no worker polling).
        let mut posted = lock(&self.answers);
        let mut unclaimed = Vec::new();
        for a in std::mem::take(&mut *posted) {
            unclaimed.extend(a.send());
        }
        if !unclaimed.is_empty() {
            lock(&self.unclaimed).extend(unclaimed);
        }
        drop(posted);
    }

    /// Claims to give back with a later batch (one that carried them did not commit).
    pub(crate) fn unclaim(&self, claims: Vec<ClaimRef>) {
        lock(&self.unclaimed).extend(claims);
    }

    /// The claims to give back (see [`Done::send`]).
    pub(crate) fn take_unclaimed(&self) -> Vec<ClaimRef> {
        std::mem::take(&mut *lock(&self.unclaimed))
    }

    #[cfg(test)]
    pub(crate) fn unclaimed(&self) -> Vec<ClaimRef> {
        lock(&self.unclaimed).clone()
    }

    /// Waits for the answer on `rx`, handing out whatever is posted meanwhile.
    pub(crate) async fn answer<T>(&self, rx: oneshot::Receiver<T>) -> Result<T, oneshot::error::RecvError> {
        let mut rx = std::pin::pin!(rx);
        loop {
            tokio::select! {
                biased;
                r = &mut rx => return r,
                () = self.posted.notified() => self.hand_out(),
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookguard_core::inbox::InboxError;

    fn answer(v: u64) -> (Done, oneshot::Receiver<Result<u64, InboxError>>) {
        let (tx, rx) = oneshot::channel();
        (Done::Count(tx, Ok(v)), rx)
    }

    /// One caller woken hands out the answers of the others too.
    #[tokio::test(flavor = "current_thread")]
    async fn one_waiting_caller_hands_out_every_answer() {
        let mb = std::sync::Arc::new(Mailbox::default());
        let (a, ra) = answer(1);
        let (b, rb) = answer(2);
        let (c, mut rc) = answer(3);
        // `c`'s caller does not wait through the mailbox (it only holds its channel).
        let first = tokio::spawn({
            let mb = mb.clone();
            async move { mb.answer(ra).await }
        });
        let second = tokio::spawn({
            let mb = mb.clone();
            async move { mb.answer(rb).await }
        });
        tokio::task::yield_now().await;
        mb.post(vec![a, b, c]);
        let both = tokio::time::timeout(Duration::from_secs(5), async { (first.await, second.await) });
        let (first, second) = both.await.expect("nobody handed the answers out");
        assert_eq!(first.unwrap().unwrap().unwrap(), 1);
        assert_eq!(second.unwrap().unwrap().unwrap(), 2);
        assert_eq!(rc.try_recv().unwrap().unwrap(), 3);
        assert!(!mb.holds_answers());
    }

    /// Posted with nobody waiting: held until the writer hands them out, and a claim for a
    /// caller that stopped waiting is kept to be given back.
    #[test]
    fn answers_nobody_takes_are_handed_out_by_the_writer() {
        let mb = Mailbox::default();
        let (a, mut ra) = answer(7);
        let (tx, rx) = oneshot::channel();
        drop(rx);
        let claim = ClaimRef::new(9, 1, 60_000);
        let items = vec![hookguard_core::inbox::ClaimedItem::new(
            claim,
            "buildworkpro",
            None,
            None,
            None,
            bytes::Bytes::new(),
            0,
        )];
        mb.post(vec![a, Done::Claim(tx, Ok(items))]);
        assert!(mb.holds_answers());
        assert!(ra.try_recv().is_err(), "not handed out yet");
        mb.hand_out();
        assert_eq!(ra.try_recv().unwrap().unwrap(), 7);
        assert_eq!(mb.take_unclaimed(), vec![claim]);
        assert!(mb.take_unclaimed().is_empty());
    }
}
