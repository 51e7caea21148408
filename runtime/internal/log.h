// Forwarding header: logging lives in base/log.h (the layer below the runtime
// and the transports). connection_core.cc still includes this path while it
// is being split (issue 16, part 2); delete this file once nothing does.
#ifndef LOCUS_RUNTIME_INTERNAL_LOG_H_
#define LOCUS_RUNTIME_INTERNAL_LOG_H_

#include "base/log.h"  // IWYU pragma: export

#endif  // LOCUS_RUNTIME_INTERNAL_LOG_H_
