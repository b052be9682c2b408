/* newsmon_speedups: the classifier's hot path in C; the declarations its files share.
 *
 * A compiled twin of pipelines/classify/engine.py's matching and scoring (``Engine._field``,
 * ``Engine.classify``, ``Engine._score``, ``_near_pair``), with the same semantics and the same
 * evidence order; tests/unit/test_engine_speedups.py checks that the two agree item for item.
 * Python keeps the general fold (NFKC, offset maps) and the pattern variants.
 *
 * Why C: a seed-like article hits ~60 patterns and matches ~3 topics; per-hit Python work (boundary
 * checks, grouping, masks, proximity) was ~80 % of classification time (docs/benchmarks.md).
 *
 * Files: trie.c (the pattern trie and the scan of a text), score.c (bounds, masks, all_of,
 * none_of, near, raw scores), engine.c (building an engine from compiled topics), module.c
 * (results as pydantic objects, the ASCII fold, the Python type and module).
 *
 * Input per field: ``norm`` (folded, lower-cased) and ``folded`` (case kept), equal lengths; offsets
 * are code-point offsets into them. The engine object keeps scratch buffers and is not re-entrant;
 * it never releases the GIL, so one object per DoFn instance is safe.
 */
#ifndef NEWSMON_SPEEDUPS_H
#define NEWSMON_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- growable int32 buffers */

typedef struct {
    int32_t *v;
    Py_ssize_t n, cap;
} IVec;

static inline int ivec_grow(IVec *a) {
    Py_ssize_t cap = a->cap ? a->cap * 2 : 64;
    int32_t *v = realloc(a->v, (size_t)cap * sizeof(int32_t));
    if (!v) { PyErr_NoMemory(); return -1; }
    a->v = v;
    a->cap = cap;
    return 0;
}

static inline int ivec_push(IVec *a, int32_t x) {
    if (a->n == a->cap && ivec_grow(a) < 0) return -1;
    a->v[a->n++] = x;
    return 0;
}


/* ---------------------------------------------------------------- the pattern trie */

/* A double-array trie slot: the child for class c of slot s is t = (node[s].base >> 1) + c when
 * node[t].check == s; the low bit of base says a key ends at this slot. Base and check share a
 * cache line, so each step of a walk touches one line of a table small enough for L2. */
typedef struct {
    int32_t base;
    int32_t check;
} Node;

typedef struct {
    int nclass;
    int32_t ascii_class[128];
    Py_UCS4 *wide_cp; /* sorted code points >= 128 that occur in keys */
    int32_t *wide_class;
    Py_ssize_t nwide;
    Py_ssize_t nstates;
    int32_t *delta; /* while building: nstates * nclass trie transitions, -1 = none */
    Node *node; /* the trie as a double array (see compact), with key_of indexed by slot */
    Py_ssize_t nslots;
    int32_t root[128]; /* slot reached from the root by each ASCII character, or -1 */
    int32_t *key_of; /* state -> key ending there, or -1 */
    Py_ssize_t nkeys;
    int32_t *key_len;
    int32_t *tgt_off; /* nkeys + 1 */
    int32_t *tgt_pid;
    uint8_t *tgt_prefix;
} Automaton;

/* ---------------------------------------------------------------- hits of one field */

typedef struct {
    int32_t *head, *tail, *count; /* per pattern id; head -1 = no hit */
    IVec order; /* pattern ids in order of first hit (Python dict insertion order) */
    IVec hs, he, hnext; /* hits as linked lists per pattern, in emission order */
    IVec spaces; /* spaces[i] = number of ' ' in norm[:i], for near windows in O(1) */
    int kind;
    const void *data;
    Py_ssize_t len;
} Field;

/* ---------------------------------------------------------------- topics */

typedef struct {
    int32_t *a, *b;
    Py_ssize_t na, nb;
    long window;
    double weight;
} Near;

typedef struct {
    double threshold, title_weight;
    int32_t *none_of, *mask, *allof_off, *allof_pid;
    Py_ssize_t n_none, n_mask, n_allof;
    Near *near;
    Py_ssize_t n_near;
} Topic;

typedef struct { int32_t field, pid, s, e, kind; double weight; } Ev;

typedef struct {
    PyObject_HEAD
    Automaton lower, cased;
    Py_ssize_t npat, ntopics;
    long max_count;
    Topic *topics;
    double *term_w; /* npat * ntopics; 0 = not a term of the topic */
    int32_t *raise_off, *raise_t; double *raise_w; /* per pattern: topics it can raise */
    int32_t *side_off, *side_g; uint8_t *side_bit; /* per pattern: near rules (global index) it is a side of */
    int32_t *near_topic; double *near_weight; Py_ssize_t nnear;
    Field fields[2];
    /* for building results: Evidence / TopicMatch classes, pattern names, topic ids, round cache */
    PyObject *evidence_type, *match_type, *names, *topic_ids, *rounded;
    Py_UCS4 *fold_from, *fold_to; /* the fold table for ASCII results, sorted by fold_from */
    int busy; /* a classify call is running (see classify_impl) */
    int init_called, ready; /* __init__ runs once; ready only when it succeeded */
    Py_ssize_t nfold;
    /* scratch */
    double *bound;
    uint8_t *seen, *counted;
    IVec touched, live_s, live_e, left, right, found;
    IVec mask_s[2], mask_e[2]; /* per field */
    Ev *ev; Py_ssize_t nev, capev;
} EngineObject;


/* trie.c */
void automaton_free(Automaton *a);
int automaton_build(Automaton *a, PyObject *keys);
void field_reset(Field *f);
int scan(const Automaton *a, PyObject *text, Field *f, IVec *found);

/* engine.c */
int engine_init(EngineObject *self, PyObject *args, PyObject *kwds);
void engine_dealloc(EngineObject *self);

/* score.c */
PyObject *classify_impl(EngineObject *self, PyObject *const *originals, PyObject *const *indexes,
                        PyObject *const *texts);

/* module.c */
PyObject *make_match(EngineObject *self, Py_ssize_t t, double raw, PyObject *const *originals,
                     PyObject *const *indexes);

#endif
