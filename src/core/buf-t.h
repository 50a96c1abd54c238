/* Types of the bounded buffer; see buf.h for the contract. */
#ifndef VEIL_CORE_BUF_T_H
#define VEIL_CORE_BUF_T_H

#include <stddef.h>

/*
 * A byte buffer with a hard upper bound. The readable bytes are
 * _data[_off, _off + _len); the writable tail is _data[_off + _len, _cap).
 * Invariants: _off + _len <= _cap <= _max; _data == NULL iff _cap == 0.
 * Read the members only through buf.h.
 */
struct veil_buf {
    char *_data;
    size_t _off; /* read position */
    size_t _len; /* bytes held */
    size_t _cap; /* bytes allocated */
    size_t _max; /* hard cap on _len (and on _cap) */
};

#endif
