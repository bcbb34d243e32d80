// The tests see the process support, and FaultProxy's proxy and loopback sockets, as part of TestSupport.
@_exported import FaultProxy
@_exported import ProcessSupport
