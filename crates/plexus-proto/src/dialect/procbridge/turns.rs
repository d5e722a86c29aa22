//! Answers released in request order: a queue of turns, each found by its id in O(1).

use std::collections::VecDeque;

use bytes::BytesMut;

/// Requests waiting for their answers to be written, in arrival order. Each has a turn and an
/// id; the ids of the queue are consecutive, so an answer finds its turn by subtraction.
#[derive(Debug)]
pub(super) struct Turns {
    /// Id of the front turn (the next id to give when the queue is empty).
    first_id: u64,
    queue: VecDeque<Turn>,
    /// Requests refused behind a turn, over all turns.
    refused: usize,
}

/// One request's place in the queue.
#[derive(Debug, Default)]
struct Turn {
    /// The answer packet, once it is known.
    answer: Option<BytesMut>,
    /// Requests that came after this one and were refused without a turn of their own; the
    /// refusal is written that many times right after this turn's answer.
    refused_after: usize,
}

impl Turns {
    /// An empty queue whose first id is 1.
    pub fn new() -> Turns {
        Turns {
            first_id: 1,
            queue: VecDeque::new(),
            refused: 0,
        }
    }

    /// Requests with a turn.
    pub fn turns(&self) -> usize {
        self.queue.len()
    }

    /// Requests whose answers are not written yet: those with a turn and those refused behind one.
    pub fn waiting(&self) -> usize {
        self.queue.len() + self.refused
    }

    /// Gives the next request a turn at the back and returns its id.
    pub fn push(&mut self) -> u64 {
        let id = self.first_id + self.queue.len() as u64;
        self.queue.push_back(Turn::default());
        id
    }

    /// Counts a request refused behind the last turn, answered right after it. `false` when there
    /// is no turn to wait behind.
    pub fn refuse_behind(&mut self) -> bool {
        let Some(last) = self.queue.back_mut() else {
            return false;
        };
        last.refused_after += 1;
        self.refused += 1;
        true
    }

    /// The place of `id` in the queue, if it has a turn.
    fn index(&self, id: u64) -> Option<usize> {
        let index = usize::try_from(id.checked_sub(self.first_id)?).ok()?;
        (index < self.queue.len()).then_some(index)
    }

    /// Whether `id` has a turn.
    pub fn holds(&self, id: u64) -> bool {
        self.index(id).is_some()
    }

    /// Records `packet` as the answer of `id` (the first answer counts; an id without a turn is
    /// ignored), then appends to `dst` every answer whose turn has come, each followed by
    /// `refusal` once for every request refused behind it.
    pub fn answer(&mut self, id: u64, packet: BytesMut, refusal: &[u8], dst: &mut BytesMut) {
        if let Some(turn) = self.index(id).and_then(|i| self.queue.get_mut(i))
            && turn.answer.is_none()
        {
            turn.answer = Some(packet);
        }
        while self.queue.front().is_some_and(|t| t.answer.is_some()) {
            let Some(turn) = self.queue.pop_front() else {
                break;
            };
            self.first_id += 1;
            if let Some(answer) = turn.answer {
                dst.extend_from_slice(&answer);
            }
            for _ in 0..turn.refused_after {
                dst.extend_from_slice(refusal);
            }
            self.refused -= turn.refused_after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{Just, Strategy};

    fn packet(text: &str) -> BytesMut {
        BytesMut::from(text.as_bytes())
    }

    #[test]
    fn answers_wait_for_earlier_ones() {
        let mut turns = Turns::new();
        let ids: Vec<u64> = (0..4).map(|_| turns.push()).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
        let mut dst = BytesMut::new();
        turns.answer(3, packet("c"), b"", &mut dst);
        turns.answer(2, packet("b"), b"", &mut dst);
        assert!(dst.is_empty());
        turns.answer(1, packet("a"), b"", &mut dst);
        assert_eq!(&dst[..], b"abc");
        assert_eq!(turns.waiting(), 1);
        assert!(!turns.holds(1) && turns.holds(4) && !turns.holds(5));
        assert_eq!(turns.push(), 5);
        turns.answer(4, packet("d"), b"", &mut dst);
        turns.answer(4, packet("again"), b"", &mut dst);
        turns.answer(99, packet("stray"), b"", &mut dst);
        assert_eq!(&dst[..], b"abcd");
        assert_eq!(turns.waiting(), 1);
    }

    #[test]
    fn refusals_follow_the_turn_they_wait_behind() {
        let mut turns = Turns::new();
        assert!(!turns.refuse_behind(), "nothing to wait behind");
        let first = turns.push();
        assert!(turns.refuse_behind());
        let second = turns.push();
        assert!(turns.refuse_behind());
        assert!(turns.refuse_behind());
        assert_eq!((turns.turns(), turns.waiting()), (2, 5));
        let mut dst = BytesMut::new();
        turns.answer(second, packet("b"), b"!", &mut dst);
        assert!(dst.is_empty());
        turns.answer(first, packet("a"), b"!", &mut dst);
        assert_eq!(&dst[..], b"a!b!!");
        assert_eq!(turns.waiting(), 0);
    }

    proptest::proptest! {
        #[test]
        fn any_answer_order_writes_request_order(
            order in Just((0..40u64).collect::<Vec<_>>()).prop_shuffle()
        ) {
            let mut turns = Turns::new();
            for _ in 0..40 {
                turns.push();
            }
            let mut dst = BytesMut::new();
            for i in order {
                turns.answer(i + 1, packet(&format!("{i:02}")), b"", &mut dst);
            }
            let expected: String = (0..40).map(|i| format!("{i:02}")).collect();
            proptest::prop_assert_eq!(&dst[..], expected.as_bytes());
            proptest::prop_assert_eq!(turns.waiting(), 0);
        }
    }
}
