/* Building an engine from compiled topics (Engine._compile_fast's arguments), and freeing it. */
#include "speedups.h"

/* A list of ints from a Python sequence (malloc'ed; *n set). NULL with an exception on error. */
static int32_t *int_array(PyObject *seq, Py_ssize_t *n) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of ints");
    if (!fast) return NULL;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    int32_t *out = malloc((size_t)(len ? len : 1) * sizeof(int32_t));
    if (!out) { Py_DECREF(fast); PyErr_NoMemory(); return NULL; }
    for (Py_ssize_t i = 0; i < len; i++) {
        long x = PyLong_AsLong(PySequence_Fast_GET_ITEM(fast, i));
        if (x == -1 && PyErr_Occurred()) { free(out); Py_DECREF(fast); return NULL; }
        if (x < INT32_MIN || x > INT32_MAX) {
            free(out);
            Py_DECREF(fast);
            PyErr_SetString(PyExc_OverflowError, "id out of range");
            return NULL;
        }
        out[i] = (int32_t)x;
    }
    Py_DECREF(fast);
    *n = len;
    return out;
}

static void topics_free(EngineObject *self) {
    if (!self->topics) return;
    for (Py_ssize_t t = 0; t < self->ntopics; t++) {
        Topic *tp = &self->topics[t];
        free(tp->none_of); free(tp->mask); free(tp->allof_off); free(tp->allof_pid);
        for (Py_ssize_t n = 0; n < tp->n_near; n++) { free(tp->near[n].a); free(tp->near[n].b); }
        free(tp->near);
    }
    free(self->topics);
    self->topics = NULL;
}

void engine_dealloc(EngineObject *self) {
    automaton_free(&self->lower);
    automaton_free(&self->cased);
    topics_free(self);
    free(self->term_w); free(self->raise_off); free(self->raise_t); free(self->raise_w);
    free(self->side_off); free(self->side_g); free(self->side_bit); free(self->near_topic); free(self->near_weight);
    for (int i = 0; i < 2; i++) {
        Field *f = &self->fields[i];
        free(f->head); free(f->tail); free(f->count);
        free(f->order.v); free(f->spaces.v); free(f->hs.v); free(f->he.v); free(f->hnext.v);
    }
    free(self->bound); free(self->seen); free(self->counted);
    free(self->touched.v); free(self->live_s.v); free(self->live_e.v); free(self->mask_s[0].v); free(self->mask_e[0].v); free(self->mask_s[1].v); free(self->mask_e[1].v);
    free(self->left.v); free(self->right.v); free(self->found.v); free(self->ev);
    Py_XDECREF(self->evidence_type); Py_XDECREF(self->match_type); Py_XDECREF(self->names);
    Py_XDECREF(self->topic_ids); Py_XDECREF(self->rounded);
    free(self->fold_from); free(self->fold_to);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check_pids(const EngineObject *self, const int32_t *v, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] >= self->npat) {
            PyErr_SetString(PyExc_ValueError, "pattern id out of range");
            return -1;
        }
    }
    return 0;
}

/* topic: (threshold, title_weight, [(pid, weight)], none_of, mask, all_of groups, [(a, b, window, weight)]) */
static int topic_build(EngineObject *self, Py_ssize_t t, PyObject *spec) {
    Topic *tp = &self->topics[t];
    PyObject *terms, *none_of, *mask, *all_of, *near;
    if (!PyArg_ParseTuple(spec, "ddOOOOO", &tp->threshold, &tp->title_weight, &terms, &none_of, &mask, &all_of, &near))
        return -1;
    PyObject *fast = PySequence_Fast(terms, "terms must be a sequence");
    if (!fast) return -1;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        int pid;
        double w;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "id", &pid, &w)) { Py_DECREF(fast); return -1; }
        if (pid < 0 || pid >= self->npat || w == 0.0) {
            Py_DECREF(fast);
            PyErr_SetString(PyExc_ValueError, "bad term");
            return -1;
        }
        self->term_w[(Py_ssize_t)pid * self->ntopics + t] = w;
    }
    Py_DECREF(fast);
    if (!(tp->none_of = int_array(none_of, &tp->n_none)) || check_pids(self, tp->none_of, tp->n_none) < 0) return -1;
    if (!(tp->mask = int_array(mask, &tp->n_mask)) || check_pids(self, tp->mask, tp->n_mask) < 0) return -1;
    fast = PySequence_Fast(all_of, "all_of must be a sequence");
    if (!fast) return -1;
    tp->n_allof = PySequence_Fast_GET_SIZE(fast);
    tp->allof_off = malloc((size_t)(tp->n_allof + 1) * sizeof(int32_t));
    IVec pids = {0};
    if (!tp->allof_off) { Py_DECREF(fast); PyErr_NoMemory(); return -1; }
    tp->allof_off[0] = 0;
    for (Py_ssize_t g = 0; g < tp->n_allof; g++) {
        Py_ssize_t n;
        int32_t *group = int_array(PySequence_Fast_GET_ITEM(fast, g), &n);
        if (!group) { free(pids.v); Py_DECREF(fast); return -1; }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (ivec_push(&pids, group[i]) < 0) { free(group); free(pids.v); Py_DECREF(fast); return -1; }
        }
        free(group);
        tp->allof_off[g + 1] = (int32_t)pids.n;
    }
    Py_DECREF(fast);
    tp->allof_pid = pids.v ? pids.v : malloc(sizeof(int32_t));
    if (!tp->allof_pid) { PyErr_NoMemory(); return -1; }
    if (check_pids(self, tp->allof_pid, pids.n) < 0) return -1;
    fast = PySequence_Fast(near, "near must be a sequence");
    if (!fast) return -1;
    tp->n_near = PySequence_Fast_GET_SIZE(fast);
    tp->near = calloc((size_t)(tp->n_near ? tp->n_near : 1), sizeof(Near));
    if (!tp->near) { Py_DECREF(fast); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t n = 0; n < tp->n_near; n++) {
        Near *nr = &tp->near[n];
        PyObject *a, *b;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, n), "OOld", &a, &b, &nr->window, &nr->weight) ||
            !(nr->a = int_array(a, &nr->na)) || !(nr->b = int_array(b, &nr->nb)) ||
            check_pids(self, nr->a, nr->na) < 0 || check_pids(self, nr->b, nr->nb) < 0) {
            tp->n_near = n + 1; /* free what was allocated */
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

static int cmp_pair(const void *x, const void *y) {
    Py_UCS4 a = ((const Py_UCS4 *)x)[0], b = ((const Py_UCS4 *)y)[0];
    return (a > b) - (a < b);
}

/* fold: {character: ASCII character} for characters >= 128 (the rest of fold() is generic). */
static int fold_table(EngineObject *self, PyObject *fold) {
    Py_ssize_t n = PyDict_GET_SIZE(fold), pos = 0, i = 0;
    PyObject *k, *v;
    Py_UCS4 *pairs = malloc((size_t)(n ? n : 1) * 2 * sizeof(Py_UCS4));
    self->fold_from = malloc((size_t)(n ? n : 1) * sizeof(Py_UCS4));
    self->fold_to = malloc((size_t)(n ? n : 1) * sizeof(Py_UCS4));
    if (!pairs || !self->fold_from || !self->fold_to) { free(pairs); PyErr_NoMemory(); return -1; }
    while (PyDict_Next(fold, &pos, &k, &v)) {
        if (!PyUnicode_Check(k) || !PyUnicode_Check(v) || PyUnicode_GET_LENGTH(k) != 1 || PyUnicode_GET_LENGTH(v) != 1 ||
            PyUnicode_READ_CHAR(k, 0) < 128 || PyUnicode_READ_CHAR(v, 0) >= 128) {
            free(pairs);
            PyErr_SetString(PyExc_ValueError, "fold maps single non-ASCII characters to ASCII ones");
            return -1;
        }
        pairs[2 * i] = PyUnicode_READ_CHAR(k, 0);
        pairs[2 * i + 1] = PyUnicode_READ_CHAR(v, 0);
        i++;
    }
    qsort(pairs, (size_t)n, 2 * sizeof(Py_UCS4), cmp_pair);
    for (i = 0; i < n; i++) { self->fold_from[i] = pairs[2 * i]; self->fold_to[i] = pairs[2 * i + 1]; }
    self->nfold = n;
    free(pairs);
    return 0;
}

int engine_init(EngineObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"lower_keys", "cased_keys", "patterns", "topics", "max_count", "topic_ids",
                             "evidence_type", "match_type", "fold", NULL};
    PyObject *lower, *cased, *topics, *names, *topic_ids, *evidence_type, *match_type, *fold;
    Py_ssize_t npat;
    long max_count;
    if (self->init_called) { PyErr_SetString(PyExc_RuntimeError, "Engine.__init__ runs once"); return -1; }
    self->init_called = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!OlO!O!O!O!", kwlist, &lower, &cased, &PyList_Type, &names,
                                     &topics, &max_count, &PyList_Type, &topic_ids, &PyType_Type, &evidence_type,
                                     &PyType_Type, &match_type, &PyDict_Type, &fold))
        return -1;
    if (fold_table(self, fold) < 0) return -1;
    /* Own copies: the caller's lists could change under us. */
    if (!(self->names = PyList_AsTuple(names)) || !(self->topic_ids = PyList_AsTuple(topic_ids))) return -1;
    npat = PyTuple_GET_SIZE(self->names);
    for (Py_ssize_t i = 0; i < npat; i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(self->names, i))) {
            PyErr_SetString(PyExc_TypeError, "patterns must be str");
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(self->topic_ids); i++) {
        if (!PyUnicode_Check(PyTuple_GET_ITEM(self->topic_ids, i))) {
            PyErr_SetString(PyExc_TypeError, "topic ids must be str");
            return -1;
        }
    }
    /* construct() calls object's tp_new directly: accept only types object.__new__ accepts. */
    for (int i = 0; i < 2; i++) {
        PyObject *probe = PyObject_CallMethod((PyObject *)&PyBaseObject_Type, "__new__", "O",
                                              i ? match_type : evidence_type);
        if (!probe) return -1;
        Py_DECREF(probe);
    }
    if (!(self->rounded = PyDict_New())) return -1;
    Py_INCREF(evidence_type); self->evidence_type = evidence_type;
    Py_INCREF(match_type); self->match_type = match_type;
    if (npat < 0 || npat > INT32_MAX / 64 || max_count < 1) { PyErr_SetString(PyExc_ValueError, "bad sizes"); return -1; }
    self->npat = npat;
    self->max_count = max_count;
    if (automaton_build(&self->lower, lower) < 0 || automaton_build(&self->cased, cased) < 0) return -1;
    for (int k = 0; k < 2; k++) {
        Automaton *a = k ? &self->cased : &self->lower;
        if (check_pids(self, a->tgt_pid, a->tgt_off[a->nkeys]) < 0) return -1;
    }
    PyObject *fast = PySequence_Fast(topics, "topics must be a sequence");
    if (!fast) return -1;
    Py_ssize_t T = self->ntopics = PySequence_Fast_GET_SIZE(fast);
    if (PyTuple_GET_SIZE(self->topic_ids) != T) { Py_DECREF(fast); PyErr_SetString(PyExc_ValueError, "topic_ids"); return -1; }
    self->topics = calloc((size_t)(T ? T : 1), sizeof(Topic));
    self->term_w = calloc((size_t)(npat ? npat : 1) * (size_t)(T ? T : 1), sizeof(double));
    self->bound = calloc((size_t)(T ? T : 1), sizeof(double));
    if (!self->topics || !self->term_w || !self->bound) { Py_DECREF(fast); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t t = 0; t < T; t++) {
        if (topic_build(self, t, PySequence_Fast_GET_ITEM(fast, t)) < 0) { Py_DECREF(fast); return -1; }
    }
    Py_DECREF(fast);

    /* Per pattern: which topics it can raise (topic order, as Engine._raises), and near sides. */
    self->raise_off = calloc((size_t)npat + 1, sizeof(int32_t));
    self->side_off = calloc((size_t)npat + 1, sizeof(int32_t));
    Py_ssize_t nraise = 0, nnear = 0, nside = 0;
    for (Py_ssize_t t = 0; t < T; t++) {
        nnear += self->topics[t].n_near;
        for (Py_ssize_t n = 0; n < self->topics[t].n_near; n++) nside += self->topics[t].near[n].na + self->topics[t].near[n].nb;
    }
    for (Py_ssize_t p = 0; p < npat; p++)
        for (Py_ssize_t t = 0; t < T; t++) nraise += self->term_w[p * T + t] != 0.0;
    self->raise_t = malloc((size_t)(nraise + 1) * sizeof(int32_t));
    self->raise_w = malloc((size_t)(nraise + 1) * sizeof(double));
    self->side_g = malloc((size_t)(nside + 1) * sizeof(int32_t));
    self->side_bit = malloc((size_t)(nside + 1));
    self->near_topic = malloc((size_t)(nnear + 1) * sizeof(int32_t));
    self->near_weight = malloc((size_t)(nnear + 1) * sizeof(double));
    self->seen = calloc((size_t)nnear + 1, 1);
    self->counted = calloc((size_t)nnear + 1, 1);
    if (!self->raise_off || !self->side_off || !self->raise_t || !self->raise_w || !self->side_g || !self->side_bit ||
        !self->near_topic || !self->near_weight || !self->seen || !self->counted) {
        PyErr_NoMemory();
        return -1;
    }
    self->nnear = nnear;
    Py_ssize_t r = 0;
    for (Py_ssize_t p = 0; p < npat; p++) {
        self->raise_off[p] = (int32_t)r;
        for (Py_ssize_t t = 0; t < T; t++) {
            double w = self->term_w[p * T + t];
            if (w != 0.0) { self->raise_t[r] = (int32_t)t; self->raise_w[r] = w > 0 ? w : 0.0; r++; }
        }
    }
    self->raise_off[npat] = (int32_t)r;
    /* Near sides as CSR: count, then fill. */
    Py_ssize_t g = 0;
    for (Py_ssize_t t = 0; t < T; t++) {
        for (Py_ssize_t n = 0; n < self->topics[t].n_near; n++, g++) {
            Near *nr = &self->topics[t].near[n];
            self->near_topic[g] = (int32_t)t;
            self->near_weight[g] = nr->weight;
            for (Py_ssize_t i = 0; i < nr->na; i++) self->side_off[nr->a[i] + 1]++;
            for (Py_ssize_t i = 0; i < nr->nb; i++) self->side_off[nr->b[i] + 1]++;
        }
    }
    for (Py_ssize_t p = 0; p < npat; p++) self->side_off[p + 1] += self->side_off[p];
    int32_t *fill = calloc((size_t)npat + 1, sizeof(int32_t));
    if (!fill) { PyErr_NoMemory(); return -1; }
    g = 0;
    for (Py_ssize_t t = 0; t < T; t++) {
        for (Py_ssize_t n = 0; n < self->topics[t].n_near; n++, g++) {
            Near *nr = &self->topics[t].near[n];
            for (int side = 1; side <= 2; side++) {
                int32_t *v = side == 1 ? nr->a : nr->b;
                Py_ssize_t m = side == 1 ? nr->na : nr->nb;
                for (Py_ssize_t i = 0; i < m; i++) {
                    int32_t at = self->side_off[v[i]] + fill[v[i]]++;
                    self->side_g[at] = (int32_t)g;
                    self->side_bit[at] = (uint8_t)side;
                }
            }
        }
    }
    free(fill);
    for (int i = 0; i < 2; i++) {
        Field *f = &self->fields[i];
        f->head = malloc((size_t)(npat ? npat : 1) * sizeof(int32_t));
        f->tail = malloc((size_t)(npat ? npat : 1) * sizeof(int32_t));
        f->count = malloc((size_t)(npat ? npat : 1) * sizeof(int32_t));
        if (!f->head || !f->tail || !f->count) { PyErr_NoMemory(); return -1; }
        for (Py_ssize_t p = 0; p < npat; p++) f->head[p] = -1;
    }
    self->ready = 1;
    return 0;
}
