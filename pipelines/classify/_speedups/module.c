/* Results as pydantic objects, the ASCII fold, and the Python type and module. */
#include "speedups.h"

/* ---------------------------------------------------------------- results */

static PyObject *S_term, *S_text, *S_field, *S_start, *S_end, *S_rule, *S_weight, *S_topic, *S_score, *S_evidence,
    *S_title, *S_body, *S_near, *S_dict, *S_fields_set, *S_extra, *S_private, *S_round, *EMPTY_TUPLE, *EV_FIELDS,
    *MATCH_FIELDS, *FOUR;

/* round(x, 4), the Python way (float.__round__), so results equal the pure-Python engine's. */
static PyObject *round4(double x) {
    PyObject *f = PyFloat_FromDouble(x);
    if (!f) return NULL;
    PyObject *r = PyObject_CallMethodObjArgs(f, S_round, FOUR, NULL);
    Py_DECREF(f);
    return r;
}

static PyObject *round4_cached(EngineObject *self, double x) {
    if (x == 0.0) return round4(x); /* 0.0 == -0.0 as dict keys; keep the sign */
    PyObject *key = PyFloat_FromDouble(x);
    if (!key) return NULL;
    PyObject *hit = PyDict_GetItemWithError(self->rounded, key);
    if (hit) { Py_DECREF(key); Py_INCREF(hit); return hit; }
    if (PyErr_Occurred()) { Py_DECREF(key); return NULL; }
    PyObject *r = PyObject_CallMethodObjArgs(key, S_round, FOUR, NULL);
    if (r && PyDict_GET_SIZE(self->rounded) < 4096 && PyDict_SetItem(self->rounded, key, r) < 0) Py_CLEAR(r);
    Py_DECREF(key);
    return r;
}

/* pipelines.model.construct_trusted: a model instance from already-valid values, no validation. */
static PyObject *construct(PyObject *cls, PyObject *values, PyObject *fields) {
    PyObject *obj = PyBaseObject_Type.tp_new((PyTypeObject *)cls, EMPTY_TUPLE, NULL);
    if (!obj) return NULL;
    PyObject *set = PySet_New(fields);
    if (!set || PyObject_GenericSetAttr(obj, S_dict, values) < 0 ||
        PyObject_GenericSetAttr(obj, S_fields_set, set) < 0 || PyObject_GenericSetAttr(obj, S_extra, Py_None) < 0 ||
        PyObject_GenericSetAttr(obj, S_private, Py_None) < 0) {
        Py_XDECREF(set);
        Py_DECREF(obj);
        return NULL;
    }
    Py_DECREF(set);
    return obj;
}

static int map_offset(PyObject *index, Py_ssize_t i, Py_ssize_t *out) {
    if (index == Py_None) { *out = i; return 0; }
    if (i < 0 || i >= PyList_GET_SIZE(index)) { PyErr_SetString(PyExc_IndexError, "offset map"); return -1; }
    *out = PyLong_AsSsize_t(PyList_GET_ITEM(index, i));
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* One Evidence, as Engine._make_evidence builds it. */
static PyObject *make_evidence(EngineObject *self, const Ev *e, PyObject *const *originals, PyObject *const *indexes) {
    PyObject *orig = originals[e->field], *index = indexes[e->field];
    Py_ssize_t start, last;
    if (map_offset(index, e->s, &start) < 0 || map_offset(index, e->e - 1, &last) < 0) return NULL;
    Py_ssize_t end = index == Py_None ? e->e : last + 1;
    if (start < 0 || end > PyUnicode_GET_LENGTH(orig) || start > end) {
        PyErr_SetString(PyExc_IndexError, "evidence span outside the text");
        return NULL;
    }
    PyObject *d = PyDict_New(), *text = NULL, *pstart = NULL, *pend = NULL, *weight = NULL, *obj = NULL;
    if (!d) return NULL;
    if ((text = PyUnicode_Substring(orig, start, end)) && (pstart = PyLong_FromSsize_t(start)) &&
        (pend = PyLong_FromSsize_t(end)) && (weight = round4_cached(self, e->weight)) &&
        PyDict_SetItem(d, S_term, PyTuple_GET_ITEM(self->names, e->pid)) == 0 && PyDict_SetItem(d, S_text, text) == 0 &&
        PyDict_SetItem(d, S_field, e->field ? S_body : S_title) == 0 && PyDict_SetItem(d, S_start, pstart) == 0 &&
        PyDict_SetItem(d, S_end, pend) == 0 && PyDict_SetItem(d, S_rule, e->kind ? S_near : S_term) == 0 &&
        PyDict_SetItem(d, S_weight, weight) == 0)
        obj = construct(self->evidence_type, d, EV_FIELDS);
    Py_XDECREF(text); Py_XDECREF(pstart); Py_XDECREF(pend); Py_XDECREF(weight);
    Py_DECREF(d);
    return obj;
}

PyObject *make_match(EngineObject *self, Py_ssize_t t, double raw, PyObject *const *originals,
                            PyObject *const *indexes) {
    PyObject *evs = PyList_New(self->nev), *score = NULL, *d = NULL, *obj = NULL;
    if (!evs) return NULL;
    for (Py_ssize_t i = 0; i < self->nev; i++) {
        PyObject *ev = make_evidence(self, &self->ev[i], originals, indexes);
        if (!ev) { Py_DECREF(evs); return NULL; }
        PyList_SET_ITEM(evs, i, ev);
    }
    if ((score = round4(raw / (raw + self->topics[t].threshold))) && (d = PyDict_New()) &&
        PyDict_SetItem(d, S_topic, PyTuple_GET_ITEM(self->topic_ids, t)) == 0 && PyDict_SetItem(d, S_score, score) == 0 &&
        PyDict_SetItem(d, S_evidence, evs) == 0)
        obj = construct(self->match_type, d, MATCH_FIELDS);
    Py_XDECREF(score); Py_XDECREF(d);
    Py_DECREF(evs);
    return obj;
}

/* classify(title, title_index, title_norm, title_folded, body, body_index, body_norm, body_folded)
 *   -> [TopicMatch, ...] in topic order (the caller ranks them), or None if the engine is busy.
 * ``*_index`` is fold()'s offset map or None; norm/folded are the lower-cased and case-kept texts. */
static PyObject *engine_classify(EngineObject *self, PyObject *args) {
    PyObject *texts[4], *originals[2], *indexes[2];
    if (!self->ready) { PyErr_SetString(PyExc_RuntimeError, "Engine is not initialised"); return NULL; }
    if (!PyArg_ParseTuple(args, "UOUUUOUU", &originals[0], &indexes[0], &texts[0], &texts[1], &originals[1],
                          &indexes[1], &texts[2], &texts[3]))
        return NULL;
    for (int i = 0; i < 2; i++) {
        if (indexes[i] != Py_None && (!PyList_Check(indexes[i]) || PyList_GET_SIZE(indexes[i]) != PyUnicode_GET_LENGTH(texts[2 * i]))) {
            PyErr_SetString(PyExc_ValueError, "offset map must be None or a list as long as the text");
            return NULL;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (PyUnicode_GET_LENGTH(texts[2 * i]) != PyUnicode_GET_LENGTH(texts[2 * i + 1])) {
            PyErr_SetString(PyExc_ValueError, "norm and folded text must have equal lengths");
            return NULL;
        }
    }
    return classify_impl(self, originals, indexes, texts);
}

/* engine.fold() for text whose folded form is ASCII (then NFKC cannot change it and offsets map
 * 1:1): line breaks and tabs become spaces, the fold table's characters their ASCII stand-ins.
 * Sets *folded and *norm (its lower case) and returns 1; returns 0 when the text needs the general
 * path (another non-ASCII character), -1 on error. */
static int fold_ascii(EngineObject *self, PyObject *text, PyObject **folded, PyObject **norm) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    PyObject *f = PyUnicode_New(n, 127), *l = PyUnicode_New(n, 127);
    if (!f || !l) { Py_XDECREF(f); Py_XDECREF(l); return -1; }
    Py_UCS1 *fo = PyUnicode_1BYTE_DATA(f), *lo = PyUnicode_1BYTE_DATA(l);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (ch >= 128) {
            Py_ssize_t lo_i = 0, hi = self->nfold;
            while (lo_i < hi) {
                Py_ssize_t mid = (lo_i + hi) / 2;
                if (self->fold_from[mid] < ch) lo_i = mid + 1; else hi = mid;
            }
            if (lo_i == self->nfold || self->fold_from[lo_i] != ch) { Py_DECREF(f); Py_DECREF(l); return 0; }
            ch = self->fold_to[lo_i];
        } else if (ch == '\n' || ch == '\r' || ch == '\t') {
            ch = ' ';
        }
        fo[i] = (Py_UCS1)ch;
        lo[i] = (Py_UCS1)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    *folded = f;
    *norm = l;
    return 1;
}

/* classify_text(title, body) -> [TopicMatch, ...] in topic order, or None when either text needs
 * the general fold (the caller then folds in Python and calls classify()). */
static PyObject *engine_classify_text(EngineObject *self, PyObject *args) {
    PyObject *originals[2], *texts[4] = {NULL, NULL, NULL, NULL}, *indexes[2] = {Py_None, Py_None}, *out = NULL;
    if (!self->ready) { PyErr_SetString(PyExc_RuntimeError, "Engine is not initialised"); return NULL; }
    if (!PyArg_ParseTuple(args, "UU", &originals[0], &originals[1])) return NULL;
    for (int fi = 0; fi < 2; fi++) {
        int ok = fold_ascii(self, originals[fi], &texts[2 * fi + 1], &texts[2 * fi]);
        if (ok <= 0) {
            if (ok == 0) out = Py_NewRef(Py_None);
            goto done;
        }
    }
    out = classify_impl(self, originals, indexes, texts);
done:
    for (int i = 0; i < 4; i++) Py_XDECREF(texts[i]);
    return out;
}

static PyMethodDef engine_methods[] = {
    {"classify_text", (PyCFunction)engine_classify_text, METH_VARARGS,
     "classify_text(title, body) -> [TopicMatch] in topic order, or None if the texts need the general fold"},
    {"classify", (PyCFunction)engine_classify, METH_VARARGS,
     "classify(title, title_index, title_norm, title_folded, body, body_index, body_norm, body_folded) -> [TopicMatch]"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "newsmon_speedups.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_dealloc = (destructor)engine_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Compiled topics: matching and scoring for pipelines.classify.engine.Engine.",
    .tp_methods = engine_methods,
    .tp_init = (initproc)engine_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "newsmon_speedups", "newsmon's compiled classifier hot path.", -1, NULL,
};

static int intern_all(void) {
    struct { PyObject **slot; const char *text; } names[] = {
        {&S_term, "term"}, {&S_text, "text"}, {&S_field, "field"}, {&S_start, "start"}, {&S_end, "end"},
        {&S_rule, "rule"}, {&S_weight, "weight"}, {&S_topic, "topic"}, {&S_score, "score"}, {&S_evidence, "evidence"},
        {&S_title, "title"}, {&S_body, "body"}, {&S_near, "near"}, {&S_dict, "__dict__"},
        {&S_fields_set, "__pydantic_fields_set__"}, {&S_extra, "__pydantic_extra__"},
        {&S_private, "__pydantic_private__"}, {&S_round, "__round__"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!(*names[i].slot = PyUnicode_InternFromString(names[i].text))) return -1;
    }
    if (!(EMPTY_TUPLE = PyTuple_New(0)) || !(FOUR = PyLong_FromLong(4))) return -1;
    EV_FIELDS = PyTuple_Pack(7, S_term, S_text, S_field, S_start, S_end, S_rule, S_weight);
    MATCH_FIELDS = PyTuple_Pack(3, S_topic, S_score, S_evidence);
    return EV_FIELDS && MATCH_FIELDS ? 0 : -1;
}

PyMODINIT_FUNC PyInit_newsmon_speedups(void) {
    if (intern_all() < 0) return NULL;
    if (PyType_Ready(&EngineType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&EngineType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0) {
        Py_DECREF(&EngineType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
