"""The benchmark's social step written directly as compiled loops with numba: the machine's limit.

The engine benchmark compares Populace with Mesa, and with this: the same step of the ``social``
scenario with the rule policy, written as plain loops over arrays that numba compiles to machine
code, with nothing recorded (no database, no checkpoints, no action trace). It is what one
core of the machine can do for this model when nothing else is asked of the program, so
Populace's distance to it is the price of its generality and its recording.

A step does what a Populace step of the benchmark experiment does (default ``SocialConfig`` and
``SocialRuleParams``), phase by phase, each phase one compiled function:

    activate: each agent is active with probability ``activation`` (0.1), and the active agents
        get a random activation order. Feeds and decisions are computed in id order (it reads
        the per-agent arrays in order), the batch is applied in activation order.
    observe: each active agent's feed, the default ``mix`` of 10 slots: 5 from ``followees`` (the
        newest posts of the accounts it follows, each account keeping its 4 newest), 3 from
        ``interest`` (each topic's 9 best posts by recency and popularity, shuffled, 3 consecutive
        from a random start), 2 from ``hot`` (the two hottest posts by Reddit's hot score, the
        same for all) and 1 from ``random``; all within the last 24 steps, comments excluded.
        Own posts and repeats are dropped, the rest kept in order, at most 10.
    decide: the rule policy: bounded confidence on everything the feed showed (move by
        ``convergence`` toward the mean stance of posts within ``confidence``, and by
        ``backfire`` away from the others), then one action drawn from the eight rates
        (post 0.2, repost 0.1, quote 0.03, comment 0.07, like 0.3, dislike 0.05, follow 0.05,
        unfollow 0.02, else nothing). Engagement targets an agreeable post with probability
        ``homophily``, else any post; dislikes and unfollows target disagreeable posts; follows
        skip authors already followed; an action with no target does nothing. New posts get
        stance = opinion + N(0, ``stance_noise``) clipped, and the agent's topic with
        probability ``topic_focus``; quotes and comments take their parent's topic.
    apply: opinions written; each action checked against the state (a repeated like or dislike,
        following someone already followed, unfollowing someone not followed are refused and
        counted); posts, reposts, quotes and comments created (parent's share or comment count,
        cascade root, the author's newest posts), likes and dislikes counted and remembered per
        agent, follow edges added and removed; in activation order.
    metrics: what Populace computes every step: action and refusal counts, posts, opinion mean,
        variance, polarisation and bimodality, exposure correlation (opinion against the mean
        stance seen), number of follow edges and attitude assortativity over all of them.

What it simplifies (each makes it cheaper than Populace, so it stays a limit):
    * the active agents are drawn as geometric gaps between them (one draw per active agent,
      the same distribution as one uniform per agent);
    * one Mersenne Twister stream (numba's ``np.random``) in id order, instead of
      Populace's counter-based draws keyed by agent id (which make a decision independent of
      the batch and of sharding); a target post is picked with one draw among the candidates
      instead of one key per feed slot;
    * the follow graph and each agent's reactions are per-agent rows in an arena (a full row
      moves to the arena's end with twice the room, the old room is not reused), searched
      linearly, instead of sorted edge keys kept in one array for vectorised lookups;
    * actions are checked as they are applied, in one pass, instead of in a separate resolve
      pass over the batch; no ``ActionBatch``, no observation object, no per-step records;
    * the seed graph is built here by a compiled Barabási–Albert generator (m = 5, from a seed
      clique of m + 1 agents, the newer account following the older one, m distinct targets),
      and the population is drawn directly (opinion uniform(-1, 1), interest among 5 topics):
      no population table, no network configuration;
    * no end-of-run cascade analysis, no final checkpoint: the last step is an ordinary one.

Core objects:
    NumbaOpinionModel: the state (arrays) and ``step()``, timing each phase.
    compile_kernels: compile every kernel on a tiny model (timed apart from the steps).
    run_numba: build and time the model for the benchmark.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from typing import Any

import numpy as np
from numba import njit

TOPICS = ("politics", "economy", "health", "technology", "sports")
RECENT = 4  # newest posts kept per author, for followee feeds (Populace's RECENT)
FEED_SIZE = 10  # posts per feed (FeedConfig.size)
WINDOW = 24  # only posts of the last WINDOW steps are shown (FeedConfig.window)
HALF_LIFE = 6.0  # FeedConfig.recency_half_life
# FeedConfig.mix (followees 0.5, interest 0.3, hot 0.1, random 0.1) shares 10 slots as 5/3/1/1;
# the hot recommender ranks twice its slots, interest keeps 3x its slots per topic
FOLLOWEE_SLOTS, INTEREST_SLOTS, HOT_SLOTS, RANDOM_SLOTS = 5, 3, 1, 1
HOT_EPOCH = 1134028003.0
HOT_SCALE = 45000.0
START_EPOCH = 1704067200.0  # simulated time of step 0 (2024-01-01); a step is one hour
STEP_SECONDS = 3600.0
EXTREME = 0.6  # SocialConfig.extreme_threshold
PHASES = ("activate", "observe", "decide", "apply", "metrics")

# action codes, as in populace.scenarios.social.actions
ACTIONS = ("create_post", "repost", "quote", "comment", "like", "dislike", "follow", "unfollow",
           "do_nothing")
CREATE_POST, REPOST, QUOTE, COMMENT, LIKE, DISLIKE, FOLLOW, UNFOLLOW, DO_NOTHING = range(9)
KIND_COMMENT = 3  # post kinds: post, repost, quote, comment
REJECTIONS = ("duplicate_reaction", "self_follow", "already_following", "not_following")

# SocialRuleParams defaults (copied so that this process imports nothing of Populace; a test
# checks that they agree): rates in action-code order, then the thresholds
RATES = np.array([0.2, 0.1, 0.03, 0.07, 0.3, 0.05, 0.05, 0.02])
PARAMS = {"confidence": 0.4, "convergence": 0.1, "backfire": 0.0, "homophily": 0.8,
          "stance_noise": 0.1, "topic_focus": 0.7}


# -- rows in an arena: each agent's followees, each agent's reactions -----------------------------


@njit(cache=False)
def _seed(seed: int) -> None:
    np.random.seed(seed)


@njit(cache=False)
def _row_has(start: np.ndarray, length: np.ndarray, pool: np.ndarray, row: int,
             value: int) -> bool:
    s = start[row]
    for q in range(s, s + length[row]):  # noqa: SIM110 (a plain loop for numba to compile)
        if pool[q] == value:
            return True
    return False


@njit(cache=False)
def _row_push(start: np.ndarray, length: np.ndarray, cap: np.ndarray, pool: np.ndarray,
              used: np.ndarray, row: int, value: int) -> np.ndarray:
    """Append ``value`` to ``row``; a full row moves to the arena's end with twice the room."""
    if length[row] == cap[row]:
        new_cap = max(4, 2 * cap[row])
        if used[0] + new_cap > len(pool):
            grown = np.empty(max(2 * len(pool), used[0] + new_cap), dtype=pool.dtype)
            grown[:used[0]] = pool[:used[0]]
            pool = grown
        s, d = start[row], used[0]
        for q in range(length[row]):
            pool[d + q] = pool[s + q]
        start[row] = d
        cap[row] = new_cap
        used[0] += new_cap
    pool[start[row] + length[row]] = value
    length[row] += 1
    return pool


@njit(cache=False)
def _row_remove(start: np.ndarray, length: np.ndarray, pool: np.ndarray, row: int,
                value: int) -> bool:
    s, m = start[row], length[row]
    for q in range(s, s + m):
        if pool[q] == value:
            pool[q] = pool[s + m - 1]
            length[row] = m - 1
            return True
    return False


@njit(cache=False)
def _barabasi_albert(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                int]:
    """Follow rows of a Barabási–Albert graph: agents 0..m follow every older one; each later
    agent follows m distinct older ones drawn in proportion to their degree (from the list of
    all edge endpoints so far)."""
    s = min(m + 1, n)
    n_edges = s * (s - 1) // 2 + max(n - s, 0) * m
    ends = np.empty(2 * n_edges, dtype=np.int64)
    start = np.empty(n, dtype=np.int64)
    length = np.empty(n, dtype=np.int64)
    pool = np.empty(n_edges + n_edges // 4 + 16, dtype=np.int64)  # room for moved rows
    pos = 0
    e = 0
    for j in range(s):
        start[j] = pos
        length[j] = j
        for i in range(j):
            pool[pos] = i
            pos += 1
            ends[2 * e] = j
            ends[2 * e + 1] = i
            e += 1
    for t in range(s, n):
        start[t] = pos
        chosen = 0
        limit = 2 * e
        while chosen < m:
            v = ends[np.random.randint(0, limit)]
            dup = False
            for q in range(chosen):
                if pool[pos + q] == v:
                    dup = True
                    break
            if not dup:
                pool[pos + chosen] = v
                chosen += 1
        for q in range(m):
            ends[2 * e] = t
            ends[2 * e + 1] = pool[pos + q]
            e += 1
        length[t] = m
        pos += m
    return start, length, length.copy(), pool, pos


# -- the phases of a step -------------------------------------------------------------------------


@njit(cache=False)
def _activate(n: int, probability: float, active: np.ndarray, order: np.ndarray) -> int:
    """Each agent is active with ``probability``: the active ones into ``active[:k]`` in id
    order, and a random activation order (positions in ``active``) into ``order[:k]``; returns
    k. The gaps between active agents are drawn (geometric) rather than one uniform per agent:
    the same distribution with a tenth of the draws at 0.1."""
    k = 0
    if probability >= 1.0:
        for i in range(n):
            active[i] = i
        k = n
    elif probability > 0.0:
        scale = 1.0 / math.log1p(-probability)
        i = -1
        while True:
            i += 1 + int(math.log(1.0 - np.random.random()) * scale)
            if i >= n:
                break
            active[k] = i
            k += 1
    for i in range(k):
        order[i] = i
    for i in range(k - 1, 0, -1):  # Fisher-Yates: the activation order
        j = np.random.randint(0, i + 1)
        order[i], order[j] = order[j], order[i]
    return k


@njit(cache=False)
def _insert_desc(keys: np.ndarray, ids: np.ndarray, count: int, key: float, pid: int) -> int:
    """Insert (key, pid) into the first ``count`` entries kept in descending (key, id) order,
    holding at most len(keys); returns the new count."""
    cap = len(keys)
    if count == cap and (key < keys[cap - 1] or (key == keys[cap - 1] and pid < ids[cap - 1])):
        return count
    j = count if count < cap else cap - 1
    while j > 0 and (keys[j - 1] < key or (keys[j - 1] == key and ids[j - 1] < pid)):
        keys[j] = keys[j - 1]
        ids[j] = ids[j - 1]
        j -= 1
    keys[j] = key
    ids[j] = pid
    return count + 1 if count < cap else cap



@njit(cache=False)
def _observe(active: np.ndarray, k: int, step: int, n_topics: int, interest: np.ndarray,
             feedable: np.ndarray, n_feedable: int, step_start: np.ndarray, recent: np.ndarray,
             f_start: np.ndarray, f_len: np.ndarray, f_pool: np.ndarray, author: np.ndarray,
             p_step: np.ndarray, topic: np.ndarray, likes: np.ndarray, dislikes: np.ndarray,
             created: np.ndarray, feed: np.ndarray, feed_len: np.ndarray) -> None:
    """Each active agent's feed (the ``mix`` recommender) into ``feed[:k]`` / ``feed_len[:k]``."""
    lo = step_start[max(0, step - WINDOW)]
    w0 = np.searchsorted(feedable[:n_feedable], lo)
    n_pool = n_feedable - w0
    # hot: the best of the window by Reddit's hot score (then the newer), the same for all
    hot_key = np.full(2 * HOT_SLOTS, -np.inf)
    hot_id = np.full(2 * HOT_SLOTS, -1, dtype=np.int64)
    n_hot = 0
    # interest: each topic's 3k best by recency and popularity, then in a shuffled order
    c = 3 * INTEREST_SLOTS
    table = np.full((n_topics, c), -1, dtype=np.int64)
    table_key = np.full((n_topics, c), np.inf)
    have = np.zeros(n_topics, dtype=np.int64)
    worst = np.zeros(n_topics, dtype=np.int64)  # slot of each topic's lowest score
    decay = np.empty(WINDOW + 1)  # 0.5 ** (age / half-life) for every age in the window
    for age in range(WINDOW + 1):
        decay[age] = 0.5 ** (age / HALF_LIFE)
    for q in range(n_feedable - 1, w0 - 1, -1):  # newest first: fewer replacements
        pid = feedable[q]
        s = likes[pid] - dislikes[pid]
        hot = (created[pid] - HOT_EPOCH) / HOT_SCALE
        if s > 1:
            hot += math.log10(s)
        elif s < -1:
            hot -= math.log10(-s)
        n_hot = _insert_desc(hot_key, hot_id, n_hot, hot, pid)
        t = topic[pid]
        score = decay[min(step - p_step[pid], WINDOW)]
        if s > 0:
            score *= 1.0 + math.log1p(s)
        h = have[t]
        if h < c:
            table[t, h] = pid
            table_key[t, h] = score
            have[t] = h + 1
            if score < table_key[t, worst[t]]:
                worst[t] = h
        elif score > table_key[t, worst[t]]:
            w = worst[t]
            table[t, w] = pid
            table_key[t, w] = score
            for j in range(c):
                if table_key[t, j] < table_key[t, w]:
                    w = j
            worst[t] = w
    for t in range(n_topics):  # one shuffle of each topic's list, shared by all agents
        for i in range(have[t] - 1, 0, -1):
            j = np.random.randint(0, i + 1)
            table[t, i], table[t, j] = table[t, j], table[t, i]
    raw = np.empty(FOLLOWEE_SLOTS + INTEREST_SLOTS + 2 * HOT_SLOTS + RANDOM_SLOTS,
                   dtype=np.int64)
    newest = np.empty(FOLLOWEE_SLOTS, dtype=np.int64)
    newest_key = np.empty(FOLLOWEE_SLOTS)
    for i in range(k):
        a = active[i]
        # followees: the newest posts in the window of the accounts a follows
        got = 0
        s0 = f_start[a]
        for q in range(s0, s0 + f_len[a]):
            f = f_pool[q]
            for r in range(RECENT):
                pid = recent[f, r]
                if pid >= lo:
                    got = _insert_desc(newest_key, newest, got, float(pid), pid)
        w = 0
        for j in range(FOLLOWEE_SLOTS):
            raw[w] = newest[j] if j < got else -1
            w += 1
        # interest: consecutive posts of a's topic from a random start
        t = interest[a]
        h = have[t]
        begin = int(np.random.random() * max(h, 1))
        for j in range(INTEREST_SLOTS):
            raw[w] = table[t, (begin + j) % max(h, 1)] if j < h else -1
            w += 1
        for j in range(2 * HOT_SLOTS):
            raw[w] = hot_id[j] if j < n_hot else -1
            w += 1
        for _ in range(RANDOM_SLOTS):
            if n_pool > 0:
                raw[w] = feedable[w0 + min(int(np.random.random() * n_pool), n_pool - 1)]
            else:
                raw[w] = -1
            w += 1
        # clean: no own posts, no repeats, the recommenders' order kept, at most FEED_SIZE
        m = 0
        for j in range(w):
            pid = raw[j]
            if pid < 0 or author[pid] == a:
                continue
            seen = False
            for q in range(m):
                if feed[i, q] == pid:
                    seen = True
                    break
            if not seen:
                feed[i, m] = pid
                m += 1
                if m == FEED_SIZE:
                    break
        feed_len[i] = m


@njit(cache=False)
def _decide(active: np.ndarray, k: int, feed: np.ndarray, feed_len: np.ndarray,
            opinion: np.ndarray, interest: np.ndarray, n_topics: int, f_start: np.ndarray,
            f_len: np.ndarray, f_pool: np.ndarray, author: np.ndarray, stance: np.ndarray,
            topic: np.ndarray, cum: np.ndarray, confidence: float, convergence: float,
            backfire: float, homophily: float, stance_noise: float, topic_focus: float,
            code: np.ndarray, post: np.ndarray, target: np.ndarray, new_topic: np.ndarray,
            new_stance: np.ndarray, new_opinion: np.ndarray, seen_opinion: np.ndarray,
            mean_seen: np.ndarray) -> None:
    """The rule policy for the active agents: one action each and the updated opinion."""
    cand = np.zeros(FEED_SIZE, dtype=np.bool_)
    for i in range(k):
        a = active[i]
        op = opinion[a]
        u0 = np.random.random()
        u1 = np.random.random()
        u2 = np.random.random()
        u3 = np.random.random()
        m = feed_len[i]
        n_agree = 0
        n_far = 0
        pull = 0.0
        push = 0.0
        total = 0.0
        for j in range(m):
            x = stance[feed[i, j]]
            total += x
            d = x - op
            if abs(d) < confidence:
                n_agree += 1
                pull += d
            else:
                n_far += 1
                push += d
        seen_opinion[i] = op
        mean_seen[i] = total / m if m else np.nan
        pull = pull / n_agree if n_agree else 0.0
        push = push / n_far if n_far else 0.0
        new_opinion[i] = min(1.0, max(-1.0, op + convergence * pull - backfire * push))
        c = DO_NOTHING
        for q in range(len(cum)):
            if u0 < cum[q]:
                c = q
                break
        # candidate posts of the chosen action, then one of them at random
        n_cand = 0
        if c != CREATE_POST and c != DO_NOTHING:
            engage_all = u1 >= homophily
            for j in range(m):
                pid = feed[i, j]
                agree = abs(stance[pid] - op) < confidence
                if c == DISLIKE:
                    ok = not agree
                elif c == UNFOLLOW:
                    ok = (not agree) and _row_has(f_start, f_len, f_pool, a, author[pid])
                elif c == FOLLOW:
                    ok = ((agree or engage_all) and author[pid] != a
                          and not _row_has(f_start, f_len, f_pool, a, author[pid]))
                else:
                    ok = agree or engage_all
                cand[j] = ok
                n_cand += ok
            if n_cand == 0:
                c = DO_NOTHING
        post[i] = -1
        target[i] = -1
        new_topic[i] = -1
        new_stance[i] = np.nan
        if c != CREATE_POST and c != DO_NOTHING:
            r = min(int(np.random.random() * n_cand), n_cand - 1)
            for j in range(m):
                if cand[j]:
                    if r == 0:
                        post[i] = feed[i, j]
                        break
                    r -= 1
            if c in (FOLLOW, UNFOLLOW):
                target[i] = author[post[i]]
        if c in (CREATE_POST, QUOTE, COMMENT):
            new_stance[i] = min(1.0, max(-1.0, op + stance_noise * np.random.normal()))
        if c == CREATE_POST:
            new_topic[i] = interest[a] if u2 < topic_focus else int(u3 * n_topics)
        elif c in (QUOTE, COMMENT):
            new_topic[i] = topic[post[i]]
        code[i] = c


@njit(cache=False)
def _apply(active: np.ndarray, order: np.ndarray, k: int, step: int, epoch: float, code: np.ndarray,
           post: np.ndarray, target: np.ndarray, new_topic: np.ndarray, new_stance: np.ndarray,
           new_opinion: np.ndarray, opinion: np.ndarray, n_posts: int, author: np.ndarray,
           p_step: np.ndarray, kind: np.ndarray, parent: np.ndarray, root: np.ndarray,
           topic: np.ndarray, stance: np.ndarray, likes: np.ndarray, dislikes: np.ndarray,
           shares: np.ndarray, comments: np.ndarray, created: np.ndarray, feedable: np.ndarray,
           n_feedable: int, recent: np.ndarray, f_start: np.ndarray, f_len: np.ndarray,
           f_cap: np.ndarray, f_pool: np.ndarray, f_used: np.ndarray, l_start: np.ndarray,
           l_len: np.ndarray, l_cap: np.ndarray, l_pool: np.ndarray, l_used: np.ndarray,
           refused: np.ndarray, counts: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Check and apply the batch in activation order (``active[order[0]]`` first; decisions
    are indexed like ``active``). The post columns and ``feedable`` must have room for ``k``
    more; returns the new post and feedable counts and the (maybe grown) arenas."""
    for i in range(k):
        opinion[active[i]] = new_opinion[i]
    for o in range(k):
        i = order[o]
        a = active[i]
        c = code[i]
        p = post[i]
        if c in (LIKE, DISLIKE):
            if _row_has(l_start, l_len, l_pool, a, p):
                refused[0] += 1
                c = DO_NOTHING
        elif c in (FOLLOW, UNFOLLOW):
            b = target[i]
            if b == a:
                refused[1] += 1
                c = DO_NOTHING
            else:
                following = _row_has(f_start, f_len, f_pool, a, b)
                if c == FOLLOW and following:
                    refused[2] += 1
                    c = DO_NOTHING
                elif c == UNFOLLOW and not following:
                    refused[3] += 1
                    c = DO_NOTHING
        counts[c] += 1
        if c <= COMMENT:  # a new post: post, repost, quote or comment
            pid = n_posts
            n_posts += 1
            author[pid] = a
            p_step[pid] = step
            kind[pid] = c
            created[pid] = epoch
            likes[pid] = 0
            dislikes[pid] = 0
            shares[pid] = 0
            comments[pid] = 0
            if c == CREATE_POST:
                parent[pid] = -1
                root[pid] = pid
                topic[pid] = new_topic[i]
                stance[pid] = new_stance[i]
            else:
                parent[pid] = p
                root[pid] = root[p]
                topic[pid] = topic[p]
                stance[pid] = stance[p] if c == REPOST else new_stance[i]
                if c == COMMENT:
                    comments[p] += 1
                else:
                    shares[p] += 1
            if c != COMMENT:  # comments are not recommended
                feedable[n_feedable] = pid
                n_feedable += 1
                for r in range(RECENT - 1):
                    recent[a, r] = recent[a, r + 1]
                recent[a, RECENT - 1] = pid
        elif c in (LIKE, DISLIKE):
            if c == LIKE:
                likes[p] += 1
            else:
                dislikes[p] += 1
            l_pool = _row_push(l_start, l_len, l_cap, l_pool, l_used, a, p)
        elif c == FOLLOW:
            f_pool = _row_push(f_start, f_len, f_cap, f_pool, f_used, a, target[i])
        elif c == UNFOLLOW:
            _row_remove(f_start, f_len, f_pool, a, target[i])
    return n_posts, n_feedable, f_pool, l_pool


@njit(cache=False)
def _metrics(opinion: np.ndarray, f_start: np.ndarray, f_len: np.ndarray, f_pool: np.ndarray,
             seen_opinion: np.ndarray, mean_seen: np.ndarray, k: int,
             extreme: float) -> np.ndarray:
    """Opinion mean, variance, polarisation, bimodality, exposure correlation, follow edges and
    attitude assortativity (Populace's formulas), in that order."""
    n = len(opinion)
    out = np.full(7, np.nan)
    if n == 0:
        return out
    mean = 0.0
    lo, hi = opinion[0], opinion[0]
    extreme_count = 0
    for i in range(n):
        x = opinion[i]
        mean += x
        lo = min(lo, x)
        hi = max(hi, x)
        extreme_count += abs(x) >= extreme
    mean /= n
    m2 = 0.0
    m3 = 0.0
    m4 = 0.0
    for i in range(n):
        d = opinion[i] - mean
        d2 = d * d
        m2 += d2
        m3 += d2 * d
        m4 += d2 * d2
    var = m2 / n
    out[0] = mean
    out[1] = var
    out[2] = extreme_count / n
    if n >= 4 and hi > lo and var > 0:  # Sarle's bimodality coefficient, bias-corrected
        g1 = m3 / n / var ** 1.5
        g2 = m4 / n / var ** 2 - 3.0
        skew = g1 * math.sqrt(n * (n - 1)) / (n - 2)
        kurt = ((n + 1) * g2 + 6) * (n - 1) / ((n - 2) * (n - 3))
        out[3] = (skew ** 2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    # exposure: Pearson correlation of opinions (before the step) and the mean stance seen
    sa = 0.0
    sb = 0.0
    pairs = 0
    for i in range(k):
        if not np.isnan(mean_seen[i]):
            sa += seen_opinion[i]
            sb += mean_seen[i]
            pairs += 1
    if pairs > 1:
        ma, mb = sa / pairs, sb / pairs
        sab = 0.0
        saa = 0.0
        sbb = 0.0
        for i in range(k):
            if not np.isnan(mean_seen[i]):
                da = seen_opinion[i] - ma
                db = mean_seen[i] - mb
                sab += da * db
                saa += da * da
                sbb += db * db
        if saa > 0 and sbb > 0:
            out[4] = sab / math.sqrt(saa * sbb)
    # attitude assortativity over every follow edge (follower's opinion, followee's opinion)
    edges = 0
    a1 = 0.0
    aa = 0.0
    b1 = 0.0
    bb = 0.0
    ab = 0.0
    for i in range(n):
        x = opinion[i]
        s = f_start[i]
        for q in range(s, s + f_len[i]):
            y = opinion[f_pool[q]]
            edges += 1
            a1 += x
            aa += x * x
            b1 += y
            bb += y * y
            ab += x * y
    out[5] = edges
    if edges >= 2:
        ma, mb = a1 / edges, b1 / edges
        cov = ab / edges - ma * mb
        va = aa / edges - ma * ma
        vb = bb / edges - mb * mb
        if va > 0 and vb > 0:
            out[6] = cov / math.sqrt(va * vb)
    return out


# -- the model ------------------------------------------------------------------------------------


_POST_COLUMNS = {"author": np.int64, "step": np.int32, "kind": np.int8, "parent": np.int64,
                 "root": np.int64, "topic": np.int16, "stance": np.float32, "likes": np.int32,
                 "dislikes": np.int32, "shares": np.int32, "comments": np.int32,
                 "created": np.float64}  # Populace's PostStore columns
_METRICS = ("opinion_mean", "opinion_var", "polarization", "bimodality", "exposure_corr",
            "follow_edges", "assortativity")


def _grown(col: np.ndarray, used: int, need: int) -> np.ndarray:
    """``col`` with room for ``need`` entries (doubling), its first ``used`` kept."""
    if need <= len(col):
        return col
    out = np.zeros(max(need, 2 * len(col)), dtype=col.dtype)
    out[:used] = col[:used]
    return out


class NumbaOpinionModel:
    """The social rule model as arrays stepped by compiled loops.

    Args:
        n: number of agents.
        seed: seeds numba's random generator (graph, population, every step's draws).
        m: Barabási–Albert edges per new agent (accounts it follows).
        activation: probability that an agent acts in a step.
        rates: the eight action rates in action-code order (default: ``SocialRuleParams``'s).
        **params: confidence, convergence, backfire, homophily, stance_noise, topic_focus
            (default: ``PARAMS``).

    ``step()`` runs one step and returns its metrics; ``phase_s`` holds the seconds of each phase
    of the last step, ``n_active`` its active agents.
    """

    def __init__(self, n: int, seed: int = 0, m: int = 5, activation: float = 0.1,
                 rates: np.ndarray | None = None, **params: float) -> None:
        unknown = set(params) - set(PARAMS)
        if unknown:
            raise TypeError(f"unknown parameters: {sorted(unknown)}")
        self.n = n
        self.activation = activation
        self.params = {**PARAMS, **params}
        self.cum = np.cumsum(RATES if rates is None else np.asarray(rates, dtype=np.float64))
        if len(self.cum) != 8 or self.cum[-1] > 1 + 1e-9:
            raise ValueError("rates: eight values adding up to at most 1")
        _seed(seed)
        self.f_start, self.f_len, self.f_cap, self.f_pool, used = _barabasi_albert(n, m)
        self.f_used = np.array([used], dtype=np.int64)
        # the seed (not numba's stream) draws the population, like the benchmark's YAML would
        rng = np.random.default_rng(seed)
        self.opinion = rng.uniform(-1.0, 1.0, n)
        self.interest = rng.integers(0, len(TOPICS), n)
        self.n_topics = len(TOPICS)
        self.l_start = np.zeros(n, dtype=np.int64)
        self.l_len = np.zeros(n, dtype=np.int64)
        self.l_cap = np.zeros(n, dtype=np.int64)
        self.l_pool = np.empty(max(1024, n // 8), dtype=np.int64)
        self.l_used = np.zeros(1, dtype=np.int64)
        self.recent = np.full((n, RECENT), -1, dtype=np.int64)
        cap = max(1024, n // 8)
        self.posts = {k: np.zeros(cap, dtype=t) for k, t in _POST_COLUMNS.items()}
        self.n_posts = 0
        self.feedable = np.zeros(cap, dtype=np.int64)
        self.n_feedable = 0
        self.step_start = np.zeros(1, dtype=np.int64)
        # per-step buffers, sized for every agent active
        self.active = np.empty(n, dtype=np.int64)
        self.order = np.empty(n, dtype=np.int64)
        self.feed = np.full((n, FEED_SIZE), -1, dtype=np.int64)
        self.feed_len = np.zeros(n, dtype=np.int64)
        self.code = np.zeros(n, dtype=np.int64)
        self.post = np.zeros(n, dtype=np.int64)
        self.target = np.zeros(n, dtype=np.int64)
        self.new_topic = np.zeros(n, dtype=np.int64)
        self.new_stance = np.zeros(n)
        self.new_opinion = np.zeros(n)
        self.seen_opinion = np.zeros(n)
        self.mean_seen = np.zeros(n)
        self.steps = 0
        self.n_active = 0
        self.phase_s: dict[str, float] = {}

    def step(self) -> dict[str, float]:
        """One step: activate, observe, decide, apply, metrics. Returns the step's metrics."""
        step = self.steps + 1
        p, prm = self.posts, self.params
        t0 = time.perf_counter()
        k = _activate(self.n, self.activation, self.active, self.order)
        t1 = time.perf_counter()
        if len(self.step_start) <= step:  # posts from now on belong to this step
            self.step_start = np.concatenate([self.step_start, np.full(
                step + 1 - len(self.step_start), self.n_posts, dtype=np.int64)])
        self.step_start[step] = self.n_posts
        _observe(self.active, k, step, self.n_topics, self.interest, self.feedable,
                 self.n_feedable, self.step_start, self.recent, self.f_start, self.f_len,
                 self.f_pool, p["author"], p["step"], p["topic"], p["likes"], p["dislikes"],
                 p["created"], self.feed, self.feed_len)
        t2 = time.perf_counter()
        _decide(self.active, k, self.feed, self.feed_len, self.opinion, self.interest,
                self.n_topics, self.f_start, self.f_len, self.f_pool, p["author"], p["stance"],
                p["topic"], self.cum, prm["confidence"], prm["convergence"], prm["backfire"],
                prm["homophily"], prm["stance_noise"], prm["topic_focus"], self.code, self.post,
                self.target, self.new_topic, self.new_stance, self.new_opinion,
                self.seen_opinion, self.mean_seen)
        t3 = time.perf_counter()
        # room for one new post per active agent
        for name, col in p.items():
            p[name] = _grown(col, self.n_posts, self.n_posts + k)
        self.feedable = _grown(self.feedable, self.n_feedable, self.n_feedable + k)
        refused = np.zeros(len(REJECTIONS), dtype=np.int64)
        counts = np.zeros(len(ACTIONS), dtype=np.int64)
        before = self.n_posts
        self.n_posts, self.n_feedable, self.f_pool, self.l_pool = _apply(
            self.active, self.order, k, step, START_EPOCH + step * STEP_SECONDS, self.code, self.post,
            self.target, self.new_topic, self.new_stance, self.new_opinion, self.opinion,
            self.n_posts, p["author"], p["step"], p["kind"], p["parent"], p["root"], p["topic"],
            p["stance"], p["likes"], p["dislikes"], p["shares"], p["comments"], p["created"],
            self.feedable, self.n_feedable, self.recent, self.f_start, self.f_len, self.f_cap,
            self.f_pool, self.f_used, self.l_start, self.l_len, self.l_cap, self.l_pool,
            self.l_used, refused, counts)
        t4 = time.perf_counter()
        values = _metrics(self.opinion, self.f_start, self.f_len, self.f_pool,
                          self.seen_opinion, self.mean_seen, k, EXTREME)
        metrics = {f"actions.{a}": float(c) for a, c in zip(ACTIONS, counts, strict=True)}
        metrics.update({f"rejected.{r}": float(c) for r, c in zip(REJECTIONS, refused,
                                                                 strict=True)})
        metrics.update({"active_agents": float(k), "posts_new": float(self.n_posts - before),
                        "posts_total": float(self.n_posts)})
        metrics.update(zip(_METRICS, values.tolist(), strict=True))
        t5 = time.perf_counter()
        self.steps = step
        self.n_active = k
        self.phase_s = dict(zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
                                strict=True))
        return metrics

    def opinion_var(self) -> float:
        """Variance of the opinions now."""
        return float(self.opinion.var())


def compile_kernels() -> float:
    """Compile every kernel (two steps of a 200-agent model); returns the seconds it took."""
    t0 = time.perf_counter()
    model = NumbaOpinionModel(200, seed=1, activation=1.0)
    model.step()
    model.step()
    return time.perf_counter() - t0


def run_numba(n: int, steps: int, seed: int = 0, activation: float = 0.1) -> dict[str, Any]:
    """Compile, build the model and time each step.

    Returns ``compile_s`` (compiling the kernels, on a tiny model), ``compile_rss_bytes`` (the
    process's peak RSS once compiled, before the model exists: numba and LLVM hold a few hundred
    MB that any program of this kind pays), ``setup_s`` (graph,
    population, arrays), ``step_s`` (seconds of each step, metrics included), ``cpu_s`` (CPU
    seconds of each step), ``n_active``, ``phases_s`` (seconds of each phase of each step),
    the opinion variance at the start and the end, and the number of posts.
    """
    compile_s = compile_kernels()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    compile_rss = int(peak) if sys.platform == "darwin" else int(peak) * 1024
    t0 = time.perf_counter()
    model = NumbaOpinionModel(n, seed=seed, activation=activation)
    setup_s = time.perf_counter() - t0
    var_start = model.opinion_var()
    step_s: list[float] = []
    cpu_s: list[float] = []
    n_active: list[int] = []
    phases: list[dict[str, float]] = []
    metrics: dict[str, float] = {}
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        metrics = model.step()
        step_s.append(time.perf_counter() - t)
        cpu_s.append(time.process_time() - c)
        n_active.append(model.n_active)
        phases.append(model.phase_s)
    return {
        "compile_s": compile_s,
        "compile_rss_bytes": compile_rss,
        "setup_s": setup_s,
        "step_s": step_s,
        "cpu_s": cpu_s,
        "n_active": n_active,
        "phases_s": phases,
        "opinion_var_start": var_start,
        "opinion_var_end": model.opinion_var(),
        "posts": model.n_posts,
        "follow_edges": int(metrics.get("follow_edges", 0)),
        "last_metrics": metrics,
    }
