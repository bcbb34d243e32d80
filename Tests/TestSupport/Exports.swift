// The tests see the process support as part of TestSupport.
@_exported import ProcessSupport
