"""The console scripts: one module each (``keras2mxnet``, ``mxnet2keras``, ``parity``,
``predict``, ``quantize``, ``evaluate``, ``finetune``, ``pack``, ``launch``), each a parser and
a thin ``main`` over the library; the options several of them share (``arguments``); one-line
errors, exit codes and crash reports for all (``runner``).  The library never imports this
package, and every step a command takes is a library function usable from Python.
"""
