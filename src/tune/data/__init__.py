"""Image folders to training data: scan, decoded-image cache, `tf.data` pipelines, generated shapes."""
