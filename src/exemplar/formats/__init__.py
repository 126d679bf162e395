"""Annotation file formats: COCO, YOLO, Pascal VOC and Label Studio, read and written."""
