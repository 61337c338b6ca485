// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * libFuzzer target: the trace reader on arbitrary bytes. Whatever the input, it must refuse it
 * or read it; never crash, hang or read outside the buffer (ASan watches). Seeds: real
 * recordings in tests/corpus/trace.
 */
#include <stddef.h>
#include <stdint.h>
#include <dirtytrace/dirtytrace.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dt_trace_reader *r = dt_trace_reader__new(data, size, NULL, 0);
	struct dt_trace_epoch e;
	uint64_t sum = 0;

	if (!r)
		return 0;
	while (dt_trace_reader__next(r, &e, NULL, 0) > 0)
		for (size_t i = 0; i < e.nr_gfns; i++)
			sum += e.gfns[i].gfn + e.gfns[i].offset;	/* touch every page read */
	dt_trace_reader__free(r);
	return sum == 42;	/* uses sum so the loop is not optimised away; libFuzzer ignores it */
}
