// Forwarding header: the timer queue lives in base/timer_queue.h (the layer
// below the runtime and the transports). connection_core.cc and
// stream_call.cc still include this path while they are being split (issue
// 16, part 2); delete this file once nothing does.
#ifndef LOCUS_RUNTIME_INTERNAL_TIMER_QUEUE_H_
#define LOCUS_RUNTIME_INTERNAL_TIMER_QUEUE_H_

#include "base/timer_queue.h"  // IWYU pragma: export

#endif  // LOCUS_RUNTIME_INTERNAL_TIMER_QUEUE_H_
