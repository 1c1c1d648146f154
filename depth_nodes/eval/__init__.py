"""depth_nodes.eval: bag replay evaluation, metrics comparison and reports (see DESIGN layers).

Modules (import the one you need; nothing heavy is imported here):

* ``bagio``    rosbag2 reading by role (:class:`BagSource`) and writing (:class:`BagSink`)
* ``decode``   bag messages -> arrays by role, through ``depth_nodes.codec``
* ``sync``     frame assembly around key images (pure, bounded buffers)
* ``frames``   bag -> decoded, synchronised frames (:class:`BagFrames`)
* ``report``   self-contained ``report.html`` and standard plots
* ``compare``  side-by-side comparison of two ``metrics.json``
* ``commands`` ``depth-nodes eval bag-info`` / ``eval compare``
"""
