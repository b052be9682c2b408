/* Scoring one item: the optimistic bound per topic, then Engine._score for the candidates. */
#include "speedups.h"

/* ---------------------------------------------------------------- scoring */

static int ev_push(EngineObject *self, int32_t field, int32_t pid, int32_t s, int32_t e, int32_t kind, double w) {
    if (self->nev == self->capev) {
        Py_ssize_t cap = self->capev ? self->capev * 2 : 64;
        Ev *v = realloc(self->ev, (size_t)cap * sizeof(Ev));
        if (!v) { PyErr_NoMemory(); return -1; }
        self->ev = v;
        self->capev = cap;
    }
    self->ev[self->nev++] = (Ev){field, pid, s, e, kind, w};
    return 0;
}

/* Spans of the topic's masks in field fi, into mask_s/mask_e[fi] (Engine._score's ``masked``). */
static int collect_masks(EngineObject *self, const Topic *tp, int fi) {
    const Field *f = &self->fields[fi];
    IVec *ms = &self->mask_s[fi], *me = &self->mask_e[fi];
    ms->n = me->n = 0;
    for (Py_ssize_t i = 0; i < tp->n_mask; i++) {
        for (int32_t h = f->head[tp->mask[i]]; h >= 0; h = f->hnext.v[h]) {
            if (ivec_push(ms, f->hs.v[h]) < 0 || ivec_push(me, f->he.v[h]) < 0) return -1;
        }
    }
    return 0;
}

/* live(): the pattern's spans in f that no mask span overlaps, appended to live_s/live_e. */
static int live(EngineObject *self, const Field *f, int32_t pid, const IVec *ms, const IVec *me, Py_ssize_t limit) {
    Py_ssize_t got = 0;
    for (int32_t h = f->head[pid]; h >= 0 && got < limit; h = f->hnext.v[h]) {
        int32_t s = f->hs.v[h], e = f->he.v[h];
        int hidden = 0;
        for (Py_ssize_t m = 0; m < ms->n && !hidden; m++) hidden = ms->v[m] < e && s < me->v[m];
        if (hidden) continue;
        if (ivec_push(&self->live_s, s) < 0 || ivec_push(&self->live_e, e) < 0) return -1;
        got++;
    }
    return 0;
}

/* norm.count(" ", from, to), from a prefix sum built on first use per item. */
static Py_ssize_t count_spaces(Field *f, Py_ssize_t from, Py_ssize_t to) {
    if (to > f->len) to = f->len;
    if (from >= to) return 0;
    if (f->spaces.n == 0) {
        int32_t seen = 0;
        if (ivec_push(&f->spaces, 0) < 0) return -1;
        for (Py_ssize_t i = 0; i < f->len; i++) {
            seen += PyUnicode_READ(f->kind, f->data, i) == ' ';
            if (ivec_push(&f->spaces, seen) < 0) return -1;
        }
    }
    return f->spaces.v[to] - f->spaces.v[from];
}

/* Engine._score. Returns 1 with raw and evidence in self->ev when the topic applies, 0 if not. */
static int score_topic(EngineObject *self, Py_ssize_t t, double *raw_out) {
    const Topic *tp = &self->topics[t];
    Field *fields = self->fields;
    IVec *ms = self->mask_s, *me = self->mask_e;
    int result = -1;
    self->nev = 0;
    for (int fi = 0; fi < 2; fi++) {
        if (fields[fi].order.n == 0) continue;
        for (Py_ssize_t i = 0; i < tp->n_none; i++) if (fields[fi].head[tp->none_of[i]] >= 0) return 0;
    }
    for (int fi = 0; fi < 2; fi++) if (collect_masks(self, tp, fi) < 0) goto done;
    for (Py_ssize_t g = 0; g < tp->n_allof; g++) {
        int any = 0;
        for (int32_t i = tp->allof_off[g]; i < tp->allof_off[g + 1] && !any; i++) {
            for (int fi = 0; fi < 2 && !any; fi++) {
                self->live_s.n = self->live_e.n = 0;
                if (live(self, &fields[fi], tp->allof_pid[i], &ms[fi], &me[fi], 1) < 0) goto done;
                any = self->live_s.n > 0;
            }
        }
        if (!any) { result = 0; goto done; }
    }
    const Py_ssize_t T = self->ntopics;
    double raw = 0.0;
    /* Title terms, in the title's hit order: the first live span, title weight. */
    for (Py_ssize_t i = 0; i < fields[0].order.n; i++) {
        int32_t pid = fields[0].order.v[i];
        double w = self->term_w[(Py_ssize_t)pid * T + t];
        if (w == 0.0) continue;
        self->live_s.n = self->live_e.n = 0;
        if (live(self, &fields[0], pid, &ms[0], &me[0], 1) < 0) goto done;
        if (self->live_s.n) {
            double gain = w * tp->title_weight;
            raw += gain;
            if (ev_push(self, 0, pid, self->live_s.v[0], self->live_e.v[0], 0, gain) < 0) goto done;
        }
    }
    /* Body terms: up to max_count live spans each. */
    for (Py_ssize_t i = 0; i < fields[1].order.n; i++) {
        int32_t pid = fields[1].order.v[i];
        double w = self->term_w[(Py_ssize_t)pid * T + t];
        if (w == 0.0) continue;
        self->live_s.n = self->live_e.n = 0;
        if (live(self, &fields[1], pid, &ms[1], &me[1], self->max_count) < 0) goto done;
        if (self->live_s.n) {
            raw += w * (double)self->live_s.n;
            for (Py_ssize_t j = 0; j < self->live_s.n; j++) {
                if (ev_push(self, 1, pid, self->live_s.v[j], self->live_e.v[j], 0, w) < 0) goto done;
            }
        }
    }
    /* Near rules (_near_pair): first field, then the first pair in declaration/span order. */
    for (Py_ssize_t n = 0; n < tp->n_near; n++) {
        const Near *nr = &tp->near[n];
        int found = 0;
        for (int fi = 0; fi < 2 && !found; fi++) {
            Field *f = &fields[fi];
            int has_a = 0, has_b = 0;
            for (Py_ssize_t i = 0; i < nr->na && !has_a; i++) has_a = f->head[nr->a[i]] >= 0;
            for (Py_ssize_t i = 0; i < nr->nb && !has_b; i++) has_b = f->head[nr->b[i]] >= 0;
            if (!has_a || !has_b) continue;
            /* left/right hold (pid, start, end) triples. */
            self->left.n = self->right.n = 0;
            for (int side = 0; side < 2; side++) {
                const int32_t *v = side ? nr->b : nr->a;
                Py_ssize_t m = side ? nr->nb : nr->na;
                IVec *out = side ? &self->right : &self->left;
                if (side && self->left.n == 0) break;
                for (Py_ssize_t i = 0; i < m; i++) {
                    if (f->head[v[i]] < 0) continue;
                    self->live_s.n = self->live_e.n = 0;
                    if (live(self, f, v[i], &ms[fi], &me[fi], PY_SSIZE_T_MAX) < 0) goto done;
                    for (Py_ssize_t j = 0; j < self->live_s.n; j++) {
                        if (ivec_push(out, v[i]) < 0 || ivec_push(out, self->live_s.v[j]) < 0 ||
                            ivec_push(out, self->live_e.v[j]) < 0)
                            goto done;
                    }
                }
            }
            for (Py_ssize_t x = 0; x < self->left.n && !found; x += 3) {
                int32_t sa0 = self->left.v[x + 1], sa1 = self->left.v[x + 2];
                for (Py_ssize_t y = 0; y < self->right.n && !found; y += 3) {
                    int32_t sb0 = self->right.v[y + 1], sb1 = self->right.v[y + 2];
                    if (sa0 == sb0) continue;
                    int32_t first_end = sa0 < sb0 ? sa1 : sb1, second_start = sa0 < sb0 ? sb0 : sa0;
                    Py_ssize_t to = second_start > first_end ? second_start : first_end;
                    Py_ssize_t gap = count_spaces(f, first_end, to);
                    if (gap < 0) goto done;
                    if (gap <= nr->window) {
                        double gain = nr->weight * (fi == 0 ? tp->title_weight : 1.0);
                        raw += gain;
                        if (ev_push(self, fi, self->left.v[x], sa0, sa1, 1, gain) < 0 ||
                            ev_push(self, fi, self->right.v[y], sb0, sb1, 1, gain) < 0)
                            goto done;
                        found = 1;
                    }
                }
            }
        }
    }
    *raw_out = raw;
    result = (raw < tp->threshold || raw <= 0) ? 0 : 1;
done:
    return result;
}

static int set_field(Field *f, PyObject *text) {
    f->kind = PyUnicode_KIND(text);
    f->data = PyUnicode_DATA(text);
    f->len = PyUnicode_GET_LENGTH(text);
    return 0;
}

static PyObject *classify_impl_locked(EngineObject *self, PyObject *const *originals, PyObject *const *indexes,
                                      PyObject *const *texts);

/* The scratch buffers make one call at a time per engine. A second call can only arrive while the
 * first runs Python code (a finalizer during garbage collection, then a thread switch): it gets None
 * and the caller takes the pure-Python path, which is slower but gives the same result. */
PyObject *classify_impl(EngineObject *self, PyObject *const *originals, PyObject *const *indexes,
                               PyObject *const *texts) {
    if (self->busy) return Py_NewRef(Py_None);
    self->busy = 1;
    PyObject *out = classify_impl_locked(self, originals, indexes, texts);
    self->busy = 0;
    return out;
}

static PyObject *classify_impl_locked(EngineObject *self, PyObject *const *originals, PyObject *const *indexes,
                                      PyObject *const *texts) {
    PyObject *out = NULL;
    Field *fields = self->fields;
    for (int fi = 0; fi < 2; fi++) {
        field_reset(&fields[fi]);
        set_field(&fields[fi], texts[2 * fi]);
        if (scan(&self->lower, texts[2 * fi], &fields[fi], &self->found) < 0) goto fail;
        if (scan(&self->cased, texts[2 * fi + 1], &fields[fi], &self->found) < 0) goto fail;
    }
    out = PyList_New(0);
    if (!out) goto fail;
    if (fields[0].order.n == 0 && fields[1].order.n == 0) goto done;

    /* Optimistic bound per topic (Engine.classify): no masks, near rules with both sides in one field. */
    const Py_ssize_t T = self->ntopics;
    for (Py_ssize_t t = 0; t < T; t++) self->bound[t] = 0.0;
    memset(self->counted, 0, (size_t)self->nnear + 1);
    for (int fi = 0; fi < 2; fi++) {
        Field *f = &fields[fi];
        for (Py_ssize_t i = 0; i < f->order.n; i++) {
            int32_t pid = f->order.v[i];
            long c = f->count[pid] < self->max_count ? f->count[pid] : self->max_count;
            for (int32_t r = self->raise_off[pid]; r < self->raise_off[pid + 1]; r++) {
                int32_t t = self->raise_t[r];
                self->bound[t] += self->raise_w[r] * (fi == 0 ? self->topics[t].title_weight : (double)c);
            }
        }
    }
    for (int fi = 0; fi < 2; fi++) {
        Field *f = &fields[fi];
        self->touched.n = 0;
        for (Py_ssize_t i = 0; i < f->order.n; i++) {
            int32_t pid = f->order.v[i];
            for (int32_t r = self->side_off[pid]; r < self->side_off[pid + 1]; r++) {
                int32_t g = self->side_g[r];
                if (!self->seen[g] && ivec_push(&self->touched, g) < 0) {
                    memset(self->seen, 0, (size_t)self->nnear + 1); /* no stale flags for the next item */
                    goto fail;
                }
                self->seen[g] |= self->side_bit[r];
            }
        }
        for (Py_ssize_t i = 0; i < self->touched.n; i++) {
            int32_t g = self->touched.v[i];
            if (self->seen[g] == 3 && !self->counted[g]) {
                int32_t t = self->near_topic[g];
                self->counted[g] = 1;
                self->bound[t] += self->near_weight[g] * self->topics[t].title_weight;
            }
            self->seen[g] = 0;
        }
    }
    for (Py_ssize_t t = 0; t < T; t++) {
        double raw = 0.0;
        if (self->bound[t] < self->topics[t].threshold) continue;
        int ok = score_topic(self, t, &raw);
        if (ok < 0) goto fail;
        if (!ok) continue;
        PyObject *entry = make_match(self, t, raw, originals, indexes);
        if (!entry || PyList_Append(out, entry) < 0) { Py_XDECREF(entry); goto fail; }
        Py_DECREF(entry);
    }
done:
    return out;
fail:
    Py_XDECREF(out);
    return NULL;
}
