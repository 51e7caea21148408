// Umbrella header: everything an application using Locus needs.
//
// Example:
//   #include "locus/locus.h"
//   #include "echo.locus.h"
//   auto channel = locus::Connect("unix:/tmp/echo.sock");
#ifndef LOCUS_LOCUS_H_
#define LOCUS_LOCUS_H_

#include "locus/call_options.h"
#include "locus/channel.h"
#include "locus/future.h"
#include "locus/interceptor.h"
#include "locus/out.h"
#include "locus/server.h"
#include "locus/server_context.h"
#include "locus/service.h"
#include "locus/status_details.h"
#include "locus/transport.h"

#endif  // LOCUS_LOCUS_H_
