/* newsmon_speedups: the classifier's hot path in C.
 *
 * A compiled twin of pipelines/classify/engine.py's matching and scoring (``Engine._field``,
 * ``Engine.classify``, ``Engine._score``, ``_near_pair``), with the same semantics and the same
 * evidence order; tests/unit/test_engine_speedups.py checks that the two agree item for item.
 * Python keeps everything else: folding and offset maps, pattern variants, building Evidence.
 *
 * Why C: a seed-like article hits ~60 patterns and matches ~3 topics; per-hit Python work (boundary
 * checks, grouping, masks, proximity) was ~80 % of classification time (docs/benchmarks.md).
 *
 * Input per field: ``norm`` (folded, lower-cased) and ``folded`` (case kept), equal lengths; offsets
 * are code-point offsets into them. The engine object keeps scratch buffers and is not re-entrant;
 * it never releases the GIL, so one object per DoFn instance is safe.
 */
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

static int ivec_grow(IVec *a) {
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

static void automaton_free(Automaton *a) {
    free(a->wide_cp); free(a->wide_class); free(a->delta); free(a->node); free(a->key_of);
    free(a->key_len); free(a->tgt_off); free(a->tgt_pid); free(a->tgt_prefix);
    memset(a, 0, sizeof(*a));
}

static inline int32_t char_class(const Automaton *a, Py_UCS4 c) {
    if (c < 128) return a->ascii_class[c];
    Py_ssize_t lo = 0, hi = a->nwide;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (a->wide_cp[mid] < c) lo = mid + 1; else hi = mid;
    }
    return (lo < a->nwide && a->wide_cp[lo] == c) ? a->wide_class[lo] : 0;
}

static int cmp_ucs4(const void *x, const void *y) {
    Py_UCS4 a = *(const Py_UCS4 *)x, b = *(const Py_UCS4 *)y;
    return (a > b) - (a < b);
}

/* The dense trie (delta) becomes a double array: states placed breadth-first, each at the first
 * base where all its children's slots are free. Frees delta; key_of is re-indexed by slot. */
/* Smallest free slot >= i: a union-find over "next free" links with path halving. */
static inline Py_ssize_t next_free(int32_t *nf, Py_ssize_t i) {
    while (nf[i] != i) {
        nf[i] = nf[nf[i]];
        i = nf[i];
    }
    return i;
}

static int compact(Automaton *a) {
    const int nc = a->nclass;
    Py_ssize_t n = a->nstates, cap = 2 * n + 2 * nc + 2;
    Node *node = malloc((size_t)cap * sizeof(Node));
    int32_t *key = malloc((size_t)cap * sizeof(int32_t));
    int32_t *nf = malloc((size_t)(cap + 1) * sizeof(int32_t));
    int32_t *slot = malloc((size_t)n * sizeof(int32_t));
    int32_t *queue = malloc((size_t)n * sizeof(int32_t));
    int32_t *kids = malloc((size_t)nc * sizeof(int32_t));
    if (!node || !key || !nf || !slot || !queue || !kids) goto nomem;
    for (Py_ssize_t i = 0; i < cap; i++) { node[i].base = 0; node[i].check = -1; key[i] = -1; nf[i] = (int32_t)i; }
    nf[cap] = (int32_t)cap;
    node[0].check = -2; /* the root: no parent */
    nf[0] = 1;
    slot[0] = 0;
    queue[0] = 0;
    Py_ssize_t head = 0, tail = 1;
    while (head < tail) {
        int32_t r = queue[head++], s = slot[r];
        int k = 0;
        for (int c = 0; c < nc; c++) if (a->delta[(Py_ssize_t)r * nc + c] >= 0) kids[k++] = c;
        Py_ssize_t b = 0;
        if (k) {
            /* Try each free slot for the first child; the others must be free too. */
            for (Py_ssize_t f = next_free(nf, 1);; f = next_free(nf, f + 1)) {
                b = f - kids[0];
                if (b < 1) continue;
                if (b + nc + 1 >= cap) {
                    Py_ssize_t grown = cap * 2;
                    Node *n2 = realloc(node, (size_t)grown * sizeof(Node));
                    if (!n2) goto nomem;
                    node = n2;
                    int32_t *k2 = realloc(key, (size_t)grown * sizeof(int32_t));
                    if (!k2) goto nomem;
                    key = k2;
                    int32_t *f2 = realloc(nf, (size_t)(grown + 1) * sizeof(int32_t));
                    if (!f2) goto nomem;
                    nf = f2;
                    for (Py_ssize_t i = cap; i < grown; i++) { node[i].base = 0; node[i].check = -1; key[i] = -1; }
                    for (Py_ssize_t i = cap; i <= grown; i++) nf[i] = (int32_t)i;
                    cap = grown;
                }
                int ok = 1;
                for (int j = 1; j < k && ok; j++) ok = node[b + kids[j]].check == -1;
                if (ok) break;
            }
            if (b >= (1 << 29)) goto toobig;
            for (int j = 0; j < k; j++) {
                Py_ssize_t t = b + kids[j];
                int32_t child = a->delta[(Py_ssize_t)r * nc + kids[j]];
                node[t].check = s;
                nf[t] = (int32_t)(t + 1);
                key[t] = a->key_of[child];
                slot[child] = (int32_t)t;
                queue[tail++] = child;
            }
        }
        node[s].base = (int32_t)((b << 1) | (a->key_of[r] >= 0));
    }
    free(nf); free(slot); free(queue); free(kids);
    free(a->delta); a->delta = NULL;
    free(a->key_of);
    a->node = node;
    a->key_of = key;
    a->nslots = cap;
    for (int c = 0; c < 128; c++) {
        Py_ssize_t t = (node[0].base >> 1) + a->ascii_class[c];
        a->root[c] = a->ascii_class[c] && node[t].check == 0 ? (int32_t)t : -1;
    }
    return 0;
nomem:
    free(node); free(key); free(nf); free(slot); free(queue); free(kids);
    PyErr_NoMemory();
    return -1;
toobig:
    free(node); free(key); free(nf); free(slot); free(queue); free(kids);
    PyErr_SetString(PyExc_ValueError, "too many or too long patterns for the compiled matcher");
    return -1;
}

static int automaton_build(Automaton *a, PyObject *keys) {
    memset(a, 0, sizeof(*a));
    PyObject *fast = PySequence_Fast(keys, "keys must be a sequence");
    if (!fast) return -1;
    Py_ssize_t nkeys = PySequence_Fast_GET_SIZE(fast);
    Py_ssize_t total = 1, ntargets = 0;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, k);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(item, 0))) {
            PyErr_SetString(PyExc_TypeError, "each key must be (str, targets)");
            goto fail;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(PyTuple_GET_ITEM(item, 0));
        if (len == 0) { PyErr_SetString(PyExc_ValueError, "empty key"); goto fail; }
        total += len;
        Py_ssize_t nt = PyObject_Length(PyTuple_GET_ITEM(item, 1));
        if (nt < 0) goto fail;
        ntargets += nt;
    }
    if (total > INT32_MAX / 4) { PyErr_SetString(PyExc_ValueError, "too many keys"); goto fail; }

    /* Alphabet: every distinct code point in the keys gets a class; class 0 is "anything else". */
    for (int c = 0; c < 128; c++) a->ascii_class[c] = -1;
    Py_UCS4 *wide = malloc((size_t)total * sizeof(Py_UCS4));
    if (!wide) { PyErr_NoMemory(); goto fail; }
    Py_ssize_t nw = 0;
    int nclass = 1;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *key = PyTuple_GET_ITEM(PySequence_Fast_GET_ITEM(fast, k), 0);
        int kind = PyUnicode_KIND(key);
        const void *data = PyUnicode_DATA(key);
        for (Py_ssize_t i = 0; i < PyUnicode_GET_LENGTH(key); i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 128) {
                if (a->ascii_class[c] < 0) a->ascii_class[c] = nclass++;
            } else {
                wide[nw++] = c;
            }
        }
    }
    for (int c = 0; c < 128; c++) if (a->ascii_class[c] < 0) a->ascii_class[c] = 0;
    qsort(wide, (size_t)nw, sizeof(Py_UCS4), cmp_ucs4);
    Py_ssize_t uw = 0;
    for (Py_ssize_t i = 0; i < nw; i++) if (uw == 0 || wide[uw - 1] != wide[i]) wide[uw++] = wide[i];
    a->wide_cp = wide;
    a->nwide = uw;
    a->wide_class = malloc((size_t)(uw ? uw : 1) * sizeof(int32_t));
    if (!a->wide_class) { PyErr_NoMemory(); goto fail; }
    for (Py_ssize_t i = 0; i < uw; i++) a->wide_class[i] = nclass++;
    a->nclass = nclass;
    /* The trie is first built as a dense table (states x classes); keep that under 64 MiB. Rules with
     * very many distinct characters (CJK, say) get the pure-Python engine instead. */
    if ((double)total * (double)nclass >= (double)(1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "too many or too long patterns for the compiled matcher");
        goto fail;
    }

    /* Trie. */
    a->delta = malloc((size_t)total * (size_t)nclass * sizeof(int32_t));
    a->key_of = malloc((size_t)total * sizeof(int32_t));
    a->key_len = malloc((size_t)(nkeys ? nkeys : 1) * sizeof(int32_t));
    a->tgt_off = malloc((size_t)(nkeys + 1) * sizeof(int32_t));
    a->tgt_pid = malloc((size_t)(ntargets ? ntargets : 1) * sizeof(int32_t));
    a->tgt_prefix = malloc((size_t)(ntargets ? ntargets : 1));
    if (!a->delta || !a->key_of || !a->key_len || !a->tgt_off || !a->tgt_pid || !a->tgt_prefix) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < (Py_ssize_t)nclass; i++) a->delta[i] = -1;
    a->key_of[0] = -1;
    Py_ssize_t nstates = 1, t = 0;
    a->nkeys = nkeys;
    a->tgt_off[0] = 0;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, k);
        PyObject *key = PyTuple_GET_ITEM(item, 0);
        int kind = PyUnicode_KIND(key);
        const void *data = PyUnicode_DATA(key);
        Py_ssize_t len = PyUnicode_GET_LENGTH(key);
        int32_t s = 0;
        for (Py_ssize_t i = 0; i < len; i++) {
            int32_t cls = char_class(a, PyUnicode_READ(kind, data, i));
            int32_t next = a->delta[(Py_ssize_t)s * nclass + cls];
            if (next < 0) {
                next = (int32_t)nstates++;
                for (int c = 0; c < nclass; c++) a->delta[(Py_ssize_t)next * nclass + c] = -1;
                a->key_of[next] = -1;
                a->delta[(Py_ssize_t)s * nclass + cls] = next;
            }
            s = next;
        }
        if (a->key_of[s] >= 0) { PyErr_SetString(PyExc_ValueError, "duplicate key"); goto fail; }
        a->key_of[s] = (int32_t)k;
        a->key_len[k] = (int32_t)len;
        PyObject *targets = PySequence_Fast(PyTuple_GET_ITEM(item, 1), "targets must be a sequence");
        if (!targets) goto fail;
        for (Py_ssize_t j = 0; j < PySequence_Fast_GET_SIZE(targets); j++) {
            PyObject *tg = PySequence_Fast_GET_ITEM(targets, j);
            long pid;
            int prefix;
            if (!PyTuple_Check(tg) || PyTuple_GET_SIZE(tg) != 2) {
                Py_DECREF(targets);
                PyErr_SetString(PyExc_TypeError, "each target must be (pattern id, is_prefix)");
                goto fail;
            }
            pid = PyLong_AsLong(PyTuple_GET_ITEM(tg, 0));
            prefix = PyObject_IsTrue(PyTuple_GET_ITEM(tg, 1));
            if ((pid == -1 && PyErr_Occurred()) || prefix < 0) { Py_DECREF(targets); goto fail; }
            if (t >= ntargets || pid < 0 || pid > INT32_MAX) { /* a sequence whose length changed */
                Py_DECREF(targets);
                PyErr_SetString(PyExc_ValueError, "bad targets");
                goto fail;
            }
            a->tgt_pid[t] = (int32_t)pid;
            a->tgt_prefix[t] = (uint8_t)prefix;
            t++;
        }
        Py_DECREF(targets);
        a->tgt_off[k + 1] = (int32_t)t;
    }
    a->nstates = nstates;
    if (compact(a) < 0) goto fail;
    Py_DECREF(fast);
    return 0;
fail:
    Py_DECREF(fast);
    automaton_free(a);
    return -1;
}

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

static int field_add(Field *f, int32_t pid, int32_t s, int32_t e) {
    int32_t idx = (int32_t)f->hs.n;
    if (ivec_push(&f->hs, s) < 0 || ivec_push(&f->he, e) < 0 || ivec_push(&f->hnext, -1) < 0) return -1;
    if (f->head[pid] < 0) {
        /* On the order list first: field_reset clears exactly the heads listed there. */
        if (ivec_push(&f->order, pid) < 0) return -1;
        f->head[pid] = idx;
        f->count[pid] = 1;
    } else {
        f->hnext.v[f->tail[pid]] = idx;
        f->count[pid]++;
    }
    f->tail[pid] = idx;
    return 0;
}

static void field_reset(Field *f) {
    for (Py_ssize_t i = 0; i < f->order.n; i++) f->head[f->order.v[i]] = -1;
    f->order.n = f->hs.n = f->he.n = f->hnext.n = f->spaces.n = 0;
}

static inline int is_alnum(Py_UCS4 c) {
    if (c < 128) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return Py_UNICODE_ISALNUM(c);
}

/* Engine._scan: every whole-word (or prefix) hit of the keys in text.
 *
 * A hit must start where the previous character is not alphanumeric, so instead of running an
 * Aho-Corasick automaton over every character, the trie is walked from each such word start only:
 * most walks end after a character or two, in the hot top of the trie. The hits are then put in the
 * order Aho-Corasick (and so the Python engine) reports them: by end, the longest first. */
/* The slot after slot s on character ch, or -1. Class 0 (in no key) never has a child. */
static inline int32_t step(const Automaton *a, int32_t s, Py_UCS4 ch) {
    int32_t c = char_class(a, ch);
    int32_t u = (a->node[s].base >> 1) + c;
    return c && a->node[u].check == s ? u : -1;
}

static const uint8_t ASCII_ALNUM[128] = {
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1,
    ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1,
    ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
};

#define SCAN_LOOP(CHAR)                                                                                 \
    do {                                                                                                \
        const CHAR *p = (const CHAR *)data;                                                             \
        int boundary = 1;                                                                               \
        for (Py_ssize_t i = 0; i < n; i++) {                                                            \
            Py_UCS4 ch = p[i];                                                                          \
            if (boundary) {                                                                             \
                int32_t t = ch < 128 ? a->root[ch] : step(a, 0, ch);                                    \
                for (Py_ssize_t j = i; t >= 0;) {                                                       \
                    int32_t base = node[t].base;                                                        \
                    if ((base & 1) && (ivec_push(found, key_of[t]) < 0 || ivec_push(found, (int32_t)i) < 0 || \
                                       ivec_push(found, (int32_t)j) < 0))                               \
                        return -1;                                                                      \
                    if (++j >= n) break;                                                                \
                    Py_UCS4 cj = p[j];                                                                  \
                    int32_t u = (base >> 1) + (cj < 128 ? a->ascii_class[cj] : char_class(a, cj));      \
                    t = node[u].check == t ? u : -1;                                                    \
                }                                                                                       \
            }                                                                                           \
            boundary = ch < 128 ? !ASCII_ALNUM[ch] : !Py_UNICODE_ISALNUM(ch);                           \
        }                                                                                               \
    } while (0)

static int scan(const Automaton *a, PyObject *text, Field *f, IVec *found) {
    if (a->nkeys == 0) return 0;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const Node *node = a->node;
    const int32_t *key_of = a->key_of;
    found->n = 0;
    if (kind == PyUnicode_1BYTE_KIND) SCAN_LOOP(Py_UCS1);
    else if (kind == PyUnicode_2BYTE_KIND) SCAN_LOOP(Py_UCS2);
    else SCAN_LOOP(Py_UCS4);
    /* (key, start, last) triples, sorted by last then start: insertion sort, as walks from earlier
     * starts only rarely end after later ones. */
    int32_t *v = found->v;
    Py_ssize_t m = found->n / 3;
    for (Py_ssize_t x = 1; x < m; x++) {
        int32_t k = v[3 * x], st = v[3 * x + 1], last = v[3 * x + 2];
        Py_ssize_t y = x;
        while (y > 0 && (v[3 * (y - 1) + 2] > last || (v[3 * (y - 1) + 2] == last && v[3 * (y - 1) + 1] > st))) {
            memcpy(&v[3 * y], &v[3 * (y - 1)], 3 * sizeof(int32_t));
            y--;
        }
        v[3 * y] = k; v[3 * y + 1] = st; v[3 * y + 2] = last;
    }
    for (Py_ssize_t x = 0; x < m; x++) {
        int32_t k = v[3 * x];
        Py_ssize_t start = v[3 * x + 1], after = (Py_ssize_t)v[3 * x + 2] + 1;
        int whole = after >= n || !is_alnum(PyUnicode_READ(kind, data, after));
        for (int32_t t = a->tgt_off[k]; t < a->tgt_off[k + 1]; t++) {
            Py_ssize_t stop;
            if (a->tgt_prefix[t]) {
                stop = after;
                while (stop < n && is_alnum(PyUnicode_READ(kind, data, stop))) stop++;
            } else if (whole) {
                stop = after;
            } else {
                continue;
            }
            if (field_add(f, a->tgt_pid[t], (int32_t)start, (int32_t)stop) < 0) return -1;
        }
    }
    return 0;
}

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

static void engine_dealloc(EngineObject *self) {
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

static int engine_init(EngineObject *self, PyObject *args, PyObject *kwds) {
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

static PyObject *make_match(EngineObject *self, Py_ssize_t t, double raw, PyObject *const *originals,
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
static PyObject *classify_impl(EngineObject *self, PyObject *const *originals, PyObject *const *indexes,
                               PyObject *const *texts);

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

static PyObject *classify_impl_locked(EngineObject *self, PyObject *const *originals, PyObject *const *indexes,
                                      PyObject *const *texts);

/* The scratch buffers make one call at a time per engine. A second call can only arrive while the
 * first runs Python code (a finalizer during garbage collection, then a thread switch): it gets None
 * and the caller takes the pure-Python path, which is slower but gives the same result. */
static PyObject *classify_impl(EngineObject *self, PyObject *const *originals, PyObject *const *indexes,
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
